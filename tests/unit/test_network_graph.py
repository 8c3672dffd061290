"""The served forward in ONNX Runtime equals the torch reference to float32 rounding, at every
batch size, for every shape of network the config can ask for; a graph that does not belong to
the weights never serves."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from forecaster.config import ForecasterConfig
from forecaster.data.scaling import FeatureScaler
from forecaster.errors import ModelFormatError
from forecaster.methods.network.forward import OnnxForward, TorchForward, checked_graph
from forecaster.methods.network.graph import export_graph
from forecaster.methods.network.spec import NetworkSpec
from forecaster.registry.bundle import GRAPH_FILE, ModelBundle
from forecaster.registry.predictor import Forecaster

LOOKBACK, FEATURES, LEVELS = 12, 4, 7


def _network(ensemble: int, scale_feature: int | None, fixed_median: bool, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    spec = NetworkSpec(FEATURES, 8, 2, 0.1, LEVELS, 3, scale_feature, (0.4, 1.7), ensemble,
                       fixed_median)  # fmt: skip
    network = spec.build().eval()
    with torch.no_grad():  # trained-looking weights: larger than the initialisation's
        for p in network.parameters():
            p.mul_(3.0)
    return network


def _windows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, LOOKBACK, FEATURES)).astype(np.float32)


@pytest.mark.parametrize(
    ("ensemble", "scale_feature", "fixed_median"),
    [(1, None, False), (1, 2, False), (3, 2, False), (3, None, True), (3, 2, True)],
)
def test_graph_equals_the_torch_forward_at_every_batch_size(
    ensemble: int, scale_feature: int | None, fixed_median: bool
) -> None:
    network = _network(ensemble, scale_feature, fixed_median)
    graph = OnnxForward(export_graph(network, LOOKBACK, FEATURES), 1, LOOKBACK, FEATURES, LEVELS)
    reference = TorchForward(network)
    for n in (1, 2, 3, 17, 300):  # traced with 2: the LSTM states must follow the batch
        x = _windows(n, seed=n)
        got, want = graph(x), reference(x)
        assert got.shape == want.shape == (n, LEVELS)
        assert got.dtype == np.float64
        assert np.abs(want).max() > 0.01  # the comparison is of numbers that move
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max())
        assert np.all(np.diff(got, axis=1) >= 0)  # non-crossing survives the export
    if fixed_median:
        np.testing.assert_array_equal(graph(_windows(5))[:, 3], 0.0)
    assert graph(_windows(0)).shape == (0, LEVELS)


def test_a_graph_of_other_shapes_is_refused_naming_them() -> None:
    graph = export_graph(_network(1, None, False), LOOKBACK, FEATURES)
    with pytest.raises(ModelFormatError, match=r"not windows of 30 x 4 to 7 quantiles"):
        OnnxForward(graph, 1, 30, FEATURES, LEVELS)
    with pytest.raises(ModelFormatError, match="ONNX Runtime cannot load it"):
        OnnxForward(b"not a graph", 1, LOOKBACK, FEATURES, LEVELS)


def test_a_graph_of_other_weights_fails_the_check() -> None:
    ours, theirs = _network(3, 2, False, seed=0), _network(3, 2, False, seed=5)
    graph = OnnxForward(export_graph(theirs, LOOKBACK, FEATURES), 1, LOOKBACK, FEATURES, LEVELS)
    problem = checked_graph(graph, TorchForward(ours), _windows(8))
    assert problem is not None
    assert "differ from the weights'" in problem
    assert checked_graph(graph, TorchForward(theirs), _windows(8)) is None


def _saved(tmp_path: Path) -> tuple[Forecaster, tuple[Path, Path, Path]]:
    config = ForecasterConfig.model_validate(
        {"data": {"tickers": ["^GSPC"]}, "windows": {"lookback": LOOKBACK},
         "model": {"hidden_size": 8, "ensemble_size": 2}}
    )  # fmt: skip
    names = config.features.names
    scaler = FeatureScaler.fit(np.random.default_rng(0).standard_normal((50, len(names))), names)
    bundle = ModelBundle.from_config(config, scaler)
    torch.manual_seed(3)
    forecaster = Forecaster(bundle, bundle.build_network())
    return forecaster, forecaster.save(tmp_path)


def test_a_saved_model_serves_its_graph_and_answers_as_the_weights_do(tmp_path: Path) -> None:
    saved, paths = _saved(tmp_path)
    assert paths[2].name == GRAPH_FILE
    loaded = Forecaster.load(*paths, threads=1)
    assert loaded.forward.runtime == "onnxruntime"
    assert Forecaster.load(*paths, runtime="torch").forward.runtime == "torch"
    assert Forecaster.load(*paths[:2]).forward.runtime == "torch"  # a model made before graphs
    n_features = saved.bundle.n_features
    x = np.random.default_rng(2).standard_normal((9, LOOKBACK, n_features)).astype(np.float32)
    np.testing.assert_allclose(loaded.forecast_windows(x), saved.forecast_windows(x),
                               rtol=2e-6, atol=1e-7)  # fmt: skip
    from typing import get_args

    from forecaster.methods.network.forward import RUNTIMES
    from service.settings import ServiceSettings

    setting = ServiceSettings.model_fields["network_runtime"].annotation
    assert get_args(setting) == RUNTIMES  # the service offers exactly the runtimes there are
    with pytest.raises(ValueError, match="unknown network runtime 'tvm'"):
        Forecaster.load(*paths, runtime="tvm")  # type: ignore[arg-type]


def test_a_graph_that_does_not_match_the_weights_never_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, paths = _saved(tmp_path)
    other, _ = _saved(tmp_path / "other")
    torch.manual_seed(11)
    other = Forecaster(other.bundle, other.bundle.build_network())  # same shapes, other weights
    paths[2].write_bytes(export_graph(other.network, LOOKBACK, other.bundle.n_features))
    with caplog.at_level(logging.WARNING):
        loaded = Forecaster.load(*paths)
    assert loaded.forward.runtime == "torch"
    assert "differ from the weights'" in caplog.text
    assert "serving the torch forward" in caplog.text
    paths[2].write_bytes(b"\x00garbage")
    assert Forecaster.load(*paths).forward.runtime == "torch"
