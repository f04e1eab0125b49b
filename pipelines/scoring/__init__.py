"""Scoring new videos: what a user hands in (`inputs`), the whole detector as one object
(`detector`: faces -> fold models -> aggregation -> the fitted ensemble, with the training
settings) and the same detector as one MLflow pyfunc model in the registry (`package`)."""
