from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forecaster.config import ForecasterConfig, load_config
from forecaster.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_is_exactly_the_code_defaults() -> None:
    from_file = load_config(ROOT / "configs" / "default.yaml")
    assert from_file == ForecasterConfig()


def test_overrides_are_typed_and_frozen() -> None:
    config = load_config(None, ["windows.lookback=12", "data.tickers=[AAPL, MSFT]"])
    assert config.windows.lookback == 12
    assert config.data.tickers == ("AAPL", "MSFT")
    with pytest.raises(Exception, match="frozen"):
        config.windows.lookback = 3  # type: ignore[misc]


def test_dedicated_values_skip_yaml_parsing() -> None:
    config = load_config(None, values={"data.tickers": ["NO"]})
    assert config.data.tickers == ("NO",)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("windows.lookbak=3", "windows.lookbak: unknown key"),
        ("windows.lookback=1", "windows.lookback: Input should be greater than or equal to 2"),
        ("windows.lookback=abc", "windows.lookback: Input should be a valid integer"),
        ("lookback", "expected KEY=VALUE"),
        ("split.val_fraction=0.8", "must leave at least 10% for training"),
        ("data.source=csv", "needs csv_files"),
    ],
)
def test_bad_overrides_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"modle": {"x": 1}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: modle: unknown key"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_a_tuning_space_whose_features_drop_the_scale_feature_is_refused() -> None:
    """Every trial would fail on model.scale_by: say so when the config loads, not after."""
    space = ("tuning.space={features.names: {kind: choice, choices: [[log_return, volatility],"
             " [log_return, range_vol_5]]}}")  # fmt: skip
    with pytest.raises(ConfigError, match=r"choice \['log_return', 'volatility'\] lacks model"):
        load_config(None, [space])
    assert load_config(None, [space, "model.scale_by=null"]).model.scale_by is None
