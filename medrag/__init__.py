"""MedRAG: a local-first chest X-ray case workbench for education and research.

Not for clinical use. Importing this package has no side effects and loads no models: the public names
below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "medrag.config",
    "load_settings": "medrag.config",
    "Workbench": "medrag.workbench",
    "analyze": "medrag.pipeline",
    "run_to_completion": "medrag.pipeline",
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
