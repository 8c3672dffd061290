"""Entry points that orchestrate the library: the `forecaster` CLI and retraining pipelines."""
