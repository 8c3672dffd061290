"""A registered model is checked from its metadata before anything else, and no code stored
with a model ever runs in the API."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient

from forecaster.errors import ModelFormatError
from forecaster.registry.bundle import served_artifacts
from tests.service.conftest import API_KEY, Registry

pytestmark = pytest.mark.slow

OURS: dict[str, Any] = {
    "flavors": {
        "python_function": {
            "artifacts": {
                "bundle": {"path": "artifacts/bundle.json", "uri": "/tmp/x/bundle.json"},
                "weights": {"path": "artifacts/network.pt", "uri": "/tmp/x/network.pt"},
                "graph": {"path": "artifacts/network.onnx", "uri": "/tmp/x/network.onnx"},
            },
            "loader_module": "mlflow.pyfunc.loaders.code_model",
            "model_code_path": "/somewhere/forecaster/pyfunc_entry.py",
        }
    }
}


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(OURS)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def test_this_projects_model_passes_the_check() -> None:
    assert served_artifacts(OURS, "m v1") == (
        "artifacts/bundle.json", "artifacts/network.pt", "artifacts/network.onnx"
    )  # fmt: skip
    before_graphs = copy.deepcopy(OURS)
    del before_graphs["flavors"]["python_function"]["artifacts"]["graph"]
    assert served_artifacts(before_graphs, "m v1") == (
        "artifacts/bundle.json", "artifacts/network.pt", None
    )  # fmt: skip


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        (None, "no python_function flavor"),
        ({"flavors": {"sklearn": {}}}, "no python_function flavor"),
        (_changed(("flavors", "pytorch"), {}), "flavors ['python_function', 'pytorch']"),
        (_changed(("flavors", "python_function", "loader_module"), "mlflow.pyfunc.model"), "loader_module 'mlflow.pyfunc.model'"),
        (_changed(("flavors", "python_function", "model_code_path"), "/x/evil.py"), "model code '/x/evil.py'"),
        (_changed(("flavors", "python_function", "artifacts", "weights", "path"), "artifacts/w.pkl"), "artifacts"),
        (_changed(("flavors", "python_function", "artifacts", "graph", "path"), "../x.onnx"), "artifacts"),
        (_changed(("flavors", "python_function", "artifacts", "extra"), {"path": "x"}), "artifacts"),
    ],
)  # fmt: skip
def test_anything_else_is_refused(metadata: Any, fragment: str) -> None:
    with pytest.raises(ModelFormatError, match="m v1") as info:
        served_artifacts(metadata, "m v1")
    assert fragment in str(info.value)


def test_a_foreign_model_is_refused_without_running_its_code(
    client: TestClient, registry: Registry, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    script = tmp_path / "foreign_model.py"
    script.write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the model ran code in the API')\n"
        "from mlflow.models import set_model\n"
        "from mlflow.pyfunc import PythonModel\n"
        "class Foreign(PythonModel):\n"
        "    def predict(self, context, model_input: list[str], params=None) -> list[str]:\n"
        "        return model_input\n"
        "set_model(Foreign())\n"
    )
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="foreign", python_model=str(script))
    marker.unlink(missing_ok=True)  # logging it ran the script once, here in the test
    original = registry.result.model_version
    foreign = registry.new_version(source=info.model_uri)
    try:
        registry.promote(foreign)
        for _ in range(2):
            reload = client.post("/v1/admin/reload", headers={"X-API-Key": API_KEY}).json()
            assert reload["swapped"] is False
            assert reload["version"] == original
            assert "is not a forecaster model" in reload["detail"]
        assert not marker.exists(), "the registered model's code ran in the API"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["version"] == original
        assert f"stock-lstm v{foreign} failed" in ready.json()["detail"]
        served = client.post("/v1/predictions", json={"ticker": "^GSPC"})
        assert served.json()["model"]["version"] == original
        # Refused once, not downloaded and checked again on every poll.
        metrics = client.get("/metrics").text
        assert 'forecaster_model_reloads_total{outcome="failed"} 1.0' in metrics
    finally:
        registry.promote(original)


def test_a_version_missing_its_weights_is_named_by_file_and_the_old_one_keeps_serving(
    client: TestClient, registry: Registry, tmp_path: Path
) -> None:
    original = registry.result.model_version
    copied = Path(mlflow.artifacts.download_artifacts(str(registry.result.model_uri),
                                                      dst_path=str(tmp_path)))  # fmt: skip
    (copied / "artifacts" / "network.pt").unlink()
    broken = registry.new_version(source=str(copied))
    try:
        registry.promote(broken)
        reload = client.post("/v1/admin/reload", headers={"X-API-Key": API_KEY}).json()
        assert reload["swapped"] is False
        assert reload["version"] == original
        # The admin sees which file; MLflow's own message stopped at the artifact root's colon.
        assert f"stock-lstm v{broken}: cannot read its artifacts/network.pt: " in reload["detail"]
        assert "No such artifact" in reload["detail"]
        ready = client.get("/readyz").json()
        assert ready["detail"] == (
            f"loading stock-lstm v{broken} failed: its files could not be read; retrying"
        )
        served = client.post("/v1/predictions", json={"ticker": "^GSPC"})
        assert served.json()["model"]["version"] == original
    finally:
        registry.promote(original)
