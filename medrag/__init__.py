"""MedRAG: a local-first chest X-ray case workbench for education and research.

Not for clinical use. Importing this package has no side effects and loads no models: the public names
below are imported on first use.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# A library logs; the application decides where (medrag.logsetup). Without this, Python's last-resort
# handler would print a failed stage's traceback to the user's screen.
logging.getLogger("medrag").addHandler(logging.NullHandler())

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "medrag.config",
    "load_settings": "medrag.config",
    "Workbench": "medrag.workbench",
    "analyze": "medrag.pipeline",
    "run_analysis": "medrag.pipeline",
    "Analysis": "medrag.analysis",
    "load_image": "medrag.imaging",
    "label_text": "medrag.labels",
    "Store": "medrag.store",
    "MedRAGError": "medrag.errors",
    "CXRImage": "medrag.records",
    "Neighbour": "medrag.records",
    "Summary": "medrag.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medrag' has no attribute {name!r}")
