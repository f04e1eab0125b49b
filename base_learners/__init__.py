"""fakestack: base_learners."""
