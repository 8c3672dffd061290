"""Evaluation: proper scores and tests (`scores`, pure numpy), every forecaster scored on the same
days (`metrics`), the walk-forward backtest, the pure promotion gate and per-ticker routes
(`gate`), live scoring of served forecasts (`monitoring`) and the run's plots.

Nothing is imported here: the service reads the gate's routes without loading the backtest.
"""
