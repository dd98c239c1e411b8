"""Builds each stage's backend once, falls back to the offline default, and says which one runs and why."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medrag.config import Settings
from medrag.encoders import build_encoder
from medrag.errors import BackendUnavailableError, MedRAGError
from medrag.reasoners import Reasoner, Summariser, build_reasoner, build_summariser

log = logging.getLogger("medrag")

#: The offline default of each stage: what runs when the configured backend cannot load.
DEFAULT_BACKENDS: dict[str, str] = {
    "image_encoder": "classic",
    "text_encoder": "minilm",
    "reasoner": "evidence",
    "summariser": "rules",
}
STAGES: tuple[str, ...] = tuple(DEFAULT_BACKENDS)


@dataclass(frozen=True)
class BackendStatus:
    """Which backend a stage uses, which was asked for, and why they differ."""

    stage: str
    requested: str
    active: str
    model: str
    note: str = ""


class Backends:
    """The encoders, reasoner and summariser of one :class:`Settings`, each built once under a lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._members: dict[str, Any] = {}
        #: the calibration file's (mtime, size) when the reader was built (None: no file)
        self._reader_stamp: tuple[int, int] | None = None
        self._notes: dict[str, str] = {}
        self._builders: dict[str, Callable[[str], Any]] = {
            "image_encoder": lambda name: build_encoder(name, settings),
            "text_encoder": lambda name: build_encoder(name, settings),
            "reasoner": lambda name: build_reasoner(name, settings),
            "summariser": lambda name: build_summariser(name, settings),
        }

    def get(self, stage: str) -> Any:
        """The backend of ``stage`` (built on first use; the offline default when the configured one is missing)."""
        with self._lock:
            if stage not in self._members:
                requested = getattr(self.settings, stage)
                build = self._builders[stage]
                try:
                    self._members[stage] = build(requested)
                except BackendUnavailableError as exc:
                    fallback = DEFAULT_BACKENDS[stage]
                    if requested == fallback:
                        raise
                    self._notes[stage] = f"{requested} unavailable, using {fallback}: {exc}"
                    log.warning(self._notes[stage])
                    self._members[stage] = build(fallback)
            return self._members[stage]

    def use(self, stage: str, member: Any, note: str = "") -> None:
        """Put ``member`` in place of the stage's backend (a caller's own instance; tests inject failures)."""
        if stage not in self._builders and stage != "reader":
            raise KeyError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
        with self._lock:
            self._members[stage] = member
            if note:
                self._notes[stage] = note

    @property
    def image_encoder(self) -> Any:
        """The library's image encoder (fitted state loaded when present)."""
        return self.get("image_encoder")

    @property
    def text_encoder(self) -> Any:
        """The text encoder for reports, labels and questions."""
        return self.get("text_encoder")

    @property
    def reasoner(self) -> Reasoner:
        """The reasoning backend that will actually run."""
        member: Reasoner = self.get("reasoner")
        return member

    @property
    def summariser(self) -> Summariser:
        """The summariser backend that will actually run."""
        member: Summariser = self.get("summariser")
        return member

    @property
    def reader(self) -> Any:
        """The configured image readers, combined (built once; unavailable ones left out with a note).

        Built again when the library's calibration file changes (``medrag eval reading --write-calibration``
        or ``--remove-calibration`` run beside a running app): one stat per analysis, no restart needed."""
        from medrag.reading.calibration import calibration_stamp

        with self._lock:
            stamp = calibration_stamp(self.settings.data_dir)
            if "reader" not in self._members or self._reader_stamp != stamp:
                from medrag.reading.combine import build_readers

                self._members["reader"] = build_readers(self.settings)
                self._reader_stamp = stamp
            return self._members["reader"]

    def status(self) -> list[BackendStatus]:
        """For each stage: requested vs active backend and why (loads the backends)."""
        statuses = []
        for stage in STAGES:
            try:
                member = self.get(stage)
                active, model = member.name, str(getattr(member, "model", getattr(member, "version", "")))
            except MedRAGError as exc:
                active, model = "unavailable", str(exc)
            note = self._notes.get(stage, "")
            statuses.append(BackendStatus(stage, getattr(self.settings, stage), active, model, note))
        return statuses


__all__ = ["DEFAULT_BACKENDS", "STAGES", "BackendStatus", "Backends"]
