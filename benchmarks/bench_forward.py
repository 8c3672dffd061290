"""The served network's forward in each runtime the service could use: torch (the reference),
torch.jit (traced and frozen), ONNX Runtime on the exported graph (what the service runs), and
a hand-fused numpy forward (the members' LSTMs stacked into batched matrix products).

    python benchmarks/bench_forward.py [--repeats 300] [--threads 1]

The default config's architecture (5-network ensemble, hidden 32 x 2 layers, lookback 30, 10
features), weights from its initialisation scaled to trained-looking magnitudes (speed does not
depend on their values), medians after a warm-up, in process, on `--threads` intra-op threads.
Batch sizes: 1 (a lone request), 16 (a micro-batch under 16 connections), 64 (the batcher's
cap) and 251 (the windows behind a 300-row history's band factors). Each runtime's largest gap
to the reference's quantiles is printed with it.
"""

from __future__ import annotations

import argparse
import platform
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime
import torch
from bench_request_path import timed  # the same median-of-repeats timer

from forecaster.config import load_config
from forecaster.methods.network.forward import OnnxForward, TorchForward
from forecaster.methods.network.graph import export_graph
from forecaster.methods.network.network import LSTMQuantileNet, QuantileEnsemble
from forecaster.methods.network.spec import NetworkSpec

BATCHES = (1, 16, 64, 251)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class NumpyForward:
    """The ensemble's forward in float32 numpy: each layer's input projection for every step at
    once, then one batched (members, batch, hidden) x (members, hidden, 4 hidden) product per
    step for all members together."""

    def __init__(self, ensemble: QuantileEnsemble) -> None:
        members: list[LSTMQuantileNet] = list(ensemble.members)  # type: ignore[arg-type]
        first = members[0]
        self.layers = []
        for layer in range(first.lstm.num_layers):

            def stacked(name: str, layer: int = layer) -> np.ndarray:
                return np.stack([getattr(m.lstm, f"{name}_l{layer}").detach().numpy()
                                 for m in members])  # fmt: skip

            w_ih = stacked("weight_ih").transpose(0, 2, 1)  # (M, in, 4H)
            w_hh = stacked("weight_hh").transpose(0, 2, 1)  # (M, H, 4H)
            bias = (stacked("bias_ih") + stacked("bias_hh"))[:, None, None, :]
            self.layers.append((w_ih, w_hh, bias))
        self.head_w = np.stack([m.head.weight.detach().numpy() for m in members]).transpose(0, 2, 1)
        self.head_b = np.stack([m.head.bias.detach().numpy() for m in members])[:, None, :]
        self.scale = np.array([float(m.target_scale) for m in members], np.float32)[:, None]
        self.unscale = np.stack([m.vol_unscale.numpy() for m in members])
        self.vol_feature, self.median = first.vol_feature, first.median_index
        self.hidden = first.lstm.hidden_size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n_members, hidden = len(self.scale), self.hidden
        sequence = np.broadcast_to(x, (n_members, *x.shape))  # (M, B, T, F)
        for w_ih, w_hh, bias in self.layers:
            projected = sequence @ w_ih[:, None] + bias  # (M, B, T, 4H)
            h = np.zeros((n_members, x.shape[0], hidden), np.float32)
            c = np.zeros_like(h)
            outputs = []
            for t in range(x.shape[1]):
                gates = projected[:, :, t] + h @ w_hh
                i, f, g, o = np.split(gates, 4, axis=-1)  # torch's gate order
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                o = _sigmoid(o)
                h = o * np.tanh(c)
                outputs.append(h)
            sequence = np.stack(outputs, axis=2)
        raw = h @ self.head_w + self.head_b  # (M, B, Q)
        m = self.median
        below = np.cumsum(_softplus(raw[..., :m])[..., ::-1], axis=-1)[..., ::-1]
        above = np.cumsum(_softplus(raw[..., m + 1 :]), axis=-1)
        median = raw[..., m : m + 1]
        q = np.concatenate([median - below, median, median + above], axis=-1)
        if self.vol_feature is None:
            return (q * self.scale[:, :, None]).mean(axis=0).astype(np.float64)
        vol = x[None, :, -1, self.vol_feature] * self.unscale[:, 1:2] + self.unscale[:, 0:1]
        vol = np.maximum(vol, 0.1 * self.scale)
        return (q * vol[:, :, None]).mean(axis=0).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(None)
    lookback, n_features = config.windows.lookback, len(config.features.names)
    spec = NetworkSpec(n_features, config.model.hidden_size, config.model.num_layers,
                       config.model.dropout, len(config.model.quantiles), 3,
                       config.features.names.index(config.model.scale_by or "volatility"),
                       (0.5, 2.0), config.model.ensemble_size, False)  # fmt: skip
    torch.manual_seed(0)
    network = spec.build().eval()
    with torch.no_grad():
        for p in network.parameters():
            p.mul_(3.0)
    reference = TorchForward(network)
    example = torch.zeros(2, lookback, n_features)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(network, example)))

    def jit_forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return jit(torch.from_numpy(x)).double().numpy()  # type: ignore[no-any-return]

    graph = export_graph(network, lookback, n_features)
    runtimes: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "torch (reference)": reference,
        "torch.jit (trace + freeze)": jit_forward,
        f"ONNX Runtime {onnxruntime.__version__}": OnnxForward(
            graph, args.threads, lookback, n_features, len(config.model.quantiles)
        ),
        "numpy, hand-fused": NumpyForward(network),  # type: ignore[arg-type]
    }
    print(f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{config.model.ensemble_size} networks, graph {len(graph):,} bytes")  # fmt: skip
    print("| runtime | " + " | ".join(f"batch {b} (us)" for b in BATCHES) + " | largest gap |")
    print("| --- |" + " ---: |" * (len(BATCHES) + 1))
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, lookback, n_features)).astype(np.float32) for b in BATCHES}
    for name, forward in runtimes.items():
        gap = max(float(np.max(np.abs(forward(x) - reference(x)))) for x in inputs.values())
        cells = [f"{timed(lambda f=forward, x=inputs[b]: f(x), max(20, args.repeats // b)):,.0f}"
                 for b in BATCHES]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + f" | {gap:.1e} |")


if __name__ == "__main__":
    main()
