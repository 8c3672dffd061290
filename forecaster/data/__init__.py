"""Data in: sources behind one protocol (`sources/`), the OHLCV frame contract (`schemas`),
causal features, windows, date splits, the scaler fitted on training days, the trading calendar,
and `dataset`, which prepares all of them for a fold. The bundled sample series lie here too.
"""
