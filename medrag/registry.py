"""One generic name → entry registry, used for encoders, reasoners, summarisers, web providers and index kinds.

Built-in entries register themselves when their module is imported; a registry imports its built-in modules
lazily on first lookup, so ``import medrag`` stays light and a plug-in can register its own entry first.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from medrag.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (``what`` names that kind in error messages)."""

    def __init__(self, what: str, builtin_modules: Sequence[str] = ()) -> None:
        self.what = what
        self._builtin_modules = tuple(builtin_modules)
        self._entries: dict[str, T] = {}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    def register(self, name: str, entry: T) -> T:
        """Add (or replace) the entry called ``name``; returns it so it can be used as a decorator result."""
        with self._lock:
            self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object under ``name``."""
        return lambda entry: self.register(name, entry)

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        with self._lock:
            # Another thread waits on the lock until every built-in is in; the loading thread itself
            # may look names up again while a built-in module imports (re-entrant lock) and sees the
            # entries registered so far.
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for module in self._builtin_modules:
                    try:
                        importlib.import_module(module)
                    except ModuleNotFoundError as exc:
                        # An optional built-in whose own module is absent is skipped; a missing dependency
                        # inside a present module is a real error and propagates.
                        if exc.name != module:
                            raise
                self._loaded = True
            finally:
                self._loading = False

    def get(self, name: str) -> T:
        """The entry called ``name``; the error lists the valid names."""
        self._load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"Unknown {self.what} {name!r}; "
                f"choose one of: {', '.join(sorted(self._entries)) or '(none registered)'}."
            ) from None

    def names(self, where: Callable[[T], bool] | None = None) -> list[str]:
        """Registered names, sorted, optionally only those whose entry satisfies ``where``."""
        self._load_builtins()
        return sorted(name for name, entry in self._entries.items() if where is None or where(entry))

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


__all__ = ["Registry"]
