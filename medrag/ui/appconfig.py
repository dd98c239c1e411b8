"""The app's settings (light: no pandas, DuckDB or models are imported here)."""

from __future__ import annotations

import os
from typing import Any

from medrag.config import Settings, load_settings
from medrag.errors import ConfigError

#: Size of the synthetic demo library built on first start (Settings has no environment variable for it).
DEMO_CASES_ENV = "MEDRAG_DEMO_CASES"


def app_settings() -> Settings:
    """Settings from the environment and secrets, plus ``MEDRAG_DEMO_CASES``."""
    overrides: dict[str, Any] = {}
    raw = os.environ.get(DEMO_CASES_ENV, "").strip()
    if raw:
        try:
            overrides["demo_cases"] = int(raw)
        except ValueError:
            raise ConfigError(f"{DEMO_CASES_ENV} must be a whole number such as 240, got {raw!r}.") from None
        if overrides["demo_cases"] < 1:
            raise ConfigError(f"{DEMO_CASES_ENV} must be at least 1, got {raw!r}.")
    return load_settings(**overrides)
