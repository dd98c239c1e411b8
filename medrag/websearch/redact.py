"""Keeping API keys out of logs and error messages.

urllib3 logs request URLs at DEBUG, and SerpAPI puts the key in the query string: :func:`install_log_redaction`
masks such parameters in the HTTP client loggers. It is called where a provider client is built, not on import.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_SECRET_PARAM = re.compile(r"((?:api_key|apikey|api-key|key|token)=)[^&\s'\"]+", re.IGNORECASE)
_HTTP_LOGGERS = ("urllib3.connectionpool", "httpx", "httpcore", "requests")


class RedactSecrets(logging.Filter):
    """Masks ``api_key=...``, ``token=...`` and similar query parameters in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            record.msg, record.args = _SECRET_PARAM.sub(r"\1***", message), None
        return True


_FILTER = RedactSecrets()


def install_log_redaction() -> None:
    """Add the secret-masking filter to the HTTP client loggers; calling it again changes nothing."""
    for name in _HTTP_LOGGERS:
        # Logger.addFilter skips a filter it already holds, so the one shared instance makes this idempotent.
        logging.getLogger(name).addFilter(_FILTER)


def redact_secrets(message: str, secrets: Iterable[str | None]) -> str:
    """``message`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


__all__ = ["RedactSecrets", "install_log_redaction", "redact_secrets"]
