"""The app's settings (light: no pandas, DuckDB or models are imported here)."""

from __future__ import annotations

from medrag.config import Settings, load_settings


def app_settings() -> Settings:
    """Settings from the environment and ``.streamlit/secrets.toml`` (see :func:`medrag.config.load_settings`)."""
    return load_settings()
