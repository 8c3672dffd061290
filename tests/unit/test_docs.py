"""The README's reference tables cannot drift from the typed settings."""

from __future__ import annotations

from pathlib import Path

from service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        f"FORECASTER_{name.upper()}"
        for name in ServiceSettings.model_fields
        if f"`FORECASTER_{name.upper()}`" not in readme
    ]
    assert missing == []


def _keys(tree: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in tree.items():
        # tuning.space maps config keys to ranges: its entries are data, not settings.
        if isinstance(value, dict) and f"{prefix}{name}" != "tuning.space":
            keys |= _keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_default_yaml_and_readme_list_every_config_key() -> None:
    import yaml

    from forecaster.config import ForecasterConfig

    expected = _keys(ForecasterConfig().model_dump())
    in_yaml = _keys(yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()))
    assert in_yaml == expected
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [k for k in sorted(expected) if f"| `{k}` |" not in readme] == []
