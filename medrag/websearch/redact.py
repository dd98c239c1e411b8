"""Keeping API keys out of logs and error messages.

urllib3 logs request URLs at DEBUG, and SerpAPI puts the key in the query string: :func:`install_log_redaction`
masks such parameters in the HTTP client loggers. It is called where a provider client is built, not on import.
:func:`reply_detail` is the one way a provider's own reply text reaches an error message: masked, then cut.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from medrag.textsafe import printable

_SECRET_PARAM = re.compile(r"((?:api_key|apikey|api-key|key|token)=)[^&\s'\"]+", re.IGNORECASE)
_HTTP_LOGGERS = ("urllib3.connectionpool", "httpx", "httpcore", "requests")
#: Longest piece of a provider's own reply text quoted in an error message.
MAX_DETAIL_CHARS = 200


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
    """``message`` with every non-empty secret, and every ``api_key=...``-style parameter, replaced by ``***``."""
    # Longest first: a secret that contains another must not be half-masked by the shorter one.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    return _SECRET_PARAM.sub(r"\1***", message) if "=" in message else message


def reply_detail(text: object, secrets: Iterable[str | None], limit: int = MAX_DETAIL_CHARS) -> str:
    """A provider's reply text fit to quote in a message: one line, no control characters, secrets masked,
    then cut to ``limit`` characters (with an ellipsis); ``""`` for anything but a non-blank string.

    Masking comes before every cut: a cut through a key would leave a prefix that no longer matches it.
    It is done again once control characters are gone, so an escape inside a key cannot hide it.
    """
    if not isinstance(text, str):
        return ""
    secrets = list(secrets)
    # The first cut only bounds the work on a huge body; it comes after a first masking of the whole text.
    line = redact_secrets(text, secrets)[: 64 * limit]
    line = redact_secrets(" ".join(printable(line, keep_newlines=False).split()), secrets)
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


__all__ = ["MAX_DETAIL_CHARS", "RedactSecrets", "install_log_redaction", "redact_secrets", "reply_detail"]
