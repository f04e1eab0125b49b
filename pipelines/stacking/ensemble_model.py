"""The level-1 ensemble's MLflow "models from code" file (pipelines.stacking.model.log_ensemble):
copied into the model folder and run by MLflow when the model loads, in place of a pickled python
model. It only names fakestack's class; the ensemble itself is read as data in load_context."""

from mlflow.models import set_model

from pipelines.stacking.model import StackedEnsembleModel

set_model(StackedEnsembleModel())
