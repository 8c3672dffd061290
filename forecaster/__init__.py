"""forecaster: next-trading-day forecasts for daily OHLCV market data."""

__version__ = "0.1.0"
