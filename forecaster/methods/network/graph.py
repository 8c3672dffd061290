"""The served network as an ONNX graph: exported once when a model is saved, run by ONNX
Runtime in the service (forecaster.methods.network.forward.OnnxForward).

The TorchScript-based exporter is used, not the torch.export one that torch >= 2.9 defaults to:
measured on the default 5-network ensemble, the torch.export exporter took 9-11 s per export
(every registered model pays it, the test suite a dozen times) against 1.2 s, and its graph ran
a one-window forward in 360 us against 290 us. The TorchScript exporter is deprecated but ships
with every torch the project's bound admits; the equality test fails loudly if it goes.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

INPUT = "windows"
OUTPUT = "quantiles"
OPSET = 18
# Traced with two windows so nothing is specialised to a batch of one; the batch axis is dynamic.
TRACE_BATCH = 2


def export_graph(network: nn.Module, lookback: int, n_features: int) -> bytes:
    """The network's forward, (batch, lookback, n_features) float32 windows to (batch,
    n_quantiles) float32 log-return quantiles, as a self-contained ONNX model (no external
    data file), for any batch size."""
    network = network.eval()
    example = torch.zeros(TRACE_BATCH, lookback, n_features)
    with tempfile.TemporaryDirectory(prefix="forecaster-graph-") as tmp, warnings.catch_warnings():
        path = Path(tmp) / "network.onnx"
        # The exporter's own deprecation notice, tracer notes about Python-side constants (the
        # median index, the floor), and its caution about LSTM initial states with a dynamic
        # batch: the states are zeros built from the input's shape, which the equality test
        # checks at batch sizes other than the traced one.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            path,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        return path.read_bytes()
