"""The app's settings (light: no pandas, DuckDB or models are imported here)."""

from __future__ import annotations

from medrag.config import Settings, load_settings


def app_settings() -> Settings:
    """Settings from the environment and ``.streamlit/secrets.toml`` (see :func:`medrag.config.load_settings`)."""
    return load_settings()


def web_available(settings: Settings) -> bool:
    """Whether a web-search provider is configured with its key (so the Analyze toggle can be on).

    Light on the common offline path: with web search off, or no SerpAPI / Tavily key for the providers
    that need them, the answer needs no import of the web-search package (the Analyze page asks before
    its first paint).
    """
    if settings.web_provider == "off":
        return False
    keyed = settings.serpapi_api_key or settings.tavily_api_key
    if settings.web_provider in ("auto", "serpapi", "tavily") and not keyed:
        return False
    from medrag.websearch import build_provider

    return build_provider(settings) is not None
