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
