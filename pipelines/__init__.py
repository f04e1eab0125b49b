"""fakestack: pipelines."""
