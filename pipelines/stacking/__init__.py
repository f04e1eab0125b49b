"""The stack stage's internals behind `pipelines/stack.py`: the sweep of ensemble configurations
(`sweep`), the comparison table, plots and submission (`report`), one MLflow run per configuration
(`runs`) and the fitted ensemble as an MLflow model (`model`)."""
