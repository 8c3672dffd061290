"""Batched forward passes of the plain network: the torch reference (training-time evaluation,
and the served model when it has no graph) and the same network's exported graph in ONNX
Runtime (the served model), held to each other to float32 rounding by the tests."""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import numpy as np
import torch
from torch import nn

from forecaster.errors import ModelFormatError
from forecaster.methods.network.graph import INPUT, OUTPUT

BATCH = 4096
# What runs the served network's forward: its exported graph in ONNX Runtime, or torch.
Runtime = Literal["onnxruntime", "torch"]
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)
# How far the graph's quantiles may sit from the reference's on the load-time check (log-return
# units; float32 rounding of this network's sums is ~1e-7 of the inputs' scale).
GRAPH_TOLERANCE = 1e-5


def predict_quantiles(network: nn.Module, x: np.ndarray) -> np.ndarray:
    """(n, lookback, n_features) float32 windows -> (n, n_quantiles) float64 log returns."""
    network.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + BATCH], np.float32))
            outputs.append(network(batch).double().numpy())
    if not outputs:
        return np.empty((0, 0))
    return np.concatenate(outputs)


class NetworkForward(Protocol):
    """Scaled windows in, the network's quantiles (float64 log returns) out."""

    runtime: Runtime

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchForward:
    """The reference: the network's own torch forward."""

    runtime: Runtime = "torch"

    def __init__(self, network: nn.Module) -> None:
        self.network = network.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return predict_quantiles(self.network, x)


class OnnxForward:
    """The exported graph in ONNX Runtime: one session per process, run on `threads` intra-op
    threads that sleep when idle (a spinning pool burns the cores request handling needs)."""

    runtime: Runtime = "onnxruntime"

    def __init__(self, graph: bytes, threads: int, lookback: int, n_features: int,
                 n_quantiles: int) -> None:  # fmt: skip
        import onnxruntime as ort  # the service's dependency; training never needs it

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its notices are not the service's log
        try:
            # From bytes, so a graph that names external data files cannot make it read any.
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own unexported exception types
            raise ModelFormatError(f"network graph: ONNX Runtime cannot load it ({exc})") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shapes = ([i.shape[1:] for i in inputs], [o.shape[1:] for o in outputs])
        if ([i.name for i in inputs], [o.name for o in outputs]) != ([INPUT], [OUTPUT]) or (
            shapes != ([[lookback, n_features]], [[n_quantiles]])
        ):
            raise ModelFormatError(
                f"network graph: takes {[(i.name, i.shape) for i in inputs]} and gives "
                f"{[(o.name, o.shape) for o in outputs]}, not windows of {lookback} x "
                f"{n_features} to {n_quantiles} quantiles; it is not this bundle's network"
            )
        self.n_quantiles = n_quantiles

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.empty((0, self.n_quantiles))
        windows = np.ascontiguousarray(x, np.float32)
        out: np.ndarray = self.session.run([OUTPUT], {INPUT: windows})[0]
        return out.astype(np.float64)


def checked_graph(graph: OnnxForward, reference: TorchForward, windows: np.ndarray) -> str | None:
    """Why the graph must not serve (its quantiles differ from the reference's on `windows`
    by more than float32 rounding), or None."""
    got, want = graph(windows), reference(windows)
    gap = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    if gap > GRAPH_TOLERANCE:
        return f"its quantiles differ from the weights' by up to {gap:.3g} (shape {got.shape})"
    return None
