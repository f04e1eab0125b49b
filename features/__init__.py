"""fakestack: features."""
