"""Reasoner and summariser backends (see :mod:`medrag.reasoners.base`)."""

from medrag.reasoners.base import (
    SECTIONS,
    BackendSpec,
    Reasoner,
    ReasoningRequest,
    Summariser,
    build_reasoner,
    build_summariser,
    reasoner_names,
    register_reasoner,
    register_summariser,
    summariser_names,
)

__all__ = [
    "SECTIONS",
    "BackendSpec",
    "Reasoner",
    "ReasoningRequest",
    "Summariser",
    "build_reasoner",
    "build_summariser",
    "reasoner_names",
    "register_reasoner",
    "register_summariser",
    "summariser_names",
]
