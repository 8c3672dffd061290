"""MLflow "models from code" entry: logged with the model, run by MLflow when it loads it.

Using a script instead of pickling a Python object keeps the stored model free of cloudpickle
payloads; the class itself lives in forecaster.registry.pyfunc.
"""

from mlflow.models import set_model

from forecaster.registry.pyfunc import StockForecastModel

set_model(StockForecastModel())
