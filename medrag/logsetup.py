"""Where MedRAG's log goes: a file in the data folder, never the screen.

A stage that fails is logged with its traceback (``medrag.pipeline``); the user sees the one-line
``StageFailed`` message, and the traceback waits in ``<data folder>/logs/medrag.log`` for whoever debugs it.
Importing :mod:`medrag` attaches a ``NullHandler`` so that, before this is called, Python's last-resort
handler never prints a traceback to stderr either.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
from pathlib import Path

LOG_NAME = "medrag.log"
_MAX_BYTES = 5 * 1024 * 1024
_lock = threading.Lock()
_installed: dict[Path, logging.Handler] = {}


def log_to_file(data_dir: Path | None = None, level: int = logging.INFO) -> Path | None:
    """Send the ``medrag`` loggers to ``<data_dir>/logs/medrag.log`` (rotating, 5 MB × 3); idempotent.

    ``data_dir`` defaults to the configured data folder. Returns the log file, or None when it cannot be
    created (a read-only folder): logging then stays silent rather than failing the command.
    """
    if data_dir is None:
        from medrag.config import default_data_dir

        data_dir = default_data_dir()
    target = Path(data_dir).expanduser().resolve() / "logs" / LOG_NAME
    with _lock:
        if target in _installed:
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.handlers.RotatingFileHandler(
                target, maxBytes=_MAX_BYTES, backupCount=3, encoding="utf-8", delay=True
            )
        except OSError:
            return None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("medrag")
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
        _installed[target] = handler
        return target


__all__ = ["LOG_NAME", "log_to_file"]
