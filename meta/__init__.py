"""fakestack: meta."""
