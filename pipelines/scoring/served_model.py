"""The packaged detector's MLflow "models from code" file: copied into the model folder at packaging
and run by MLflow when the model loads, in place of a pickled python model (which would run
whatever its bytes say). It only names fakestack's own class; everything the detector learned is
read as data by `DetectorModel.load_context`. `pipelines.scoring.integrity` refuses a model folder
whose copy of this file differs from this one, so a tampered copy never runs under predict.py."""

from mlflow.models import set_model

from pipelines.scoring.package import DetectorModel

set_model(DetectorModel())
