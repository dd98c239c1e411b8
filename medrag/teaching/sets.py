"""Lesson sets over the store: find or create a set by name, add cases to it, list sets, show its items.

The set's own operations (create, rename, reorder, delete, notes) are the store's
(:class:`medrag.store.teaching.TeachingStore`); this module adds what the CLI and the pages share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from medrag.errors import InputError
from medrag.teaching.items import ItemView, resolve_refs
from medrag.teaching.model import ItemRef, LessonItem, LessonSet, clean_name

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore


def find_set(store: AnyStore, name_or_id: str | int) -> LessonSet:
    """A set by name (case-insensitive) or by ``#id``; an :class:`InputError` listing the sets otherwise."""
    text = str(name_or_id).strip()
    found = store.lesson_set_by_name(text)
    if found is None and text.lstrip("#").isdigit():
        found = store.get_lesson_set(int(text.lstrip("#")))
    if found is None:
        names = [s.name for s in store.lesson_sets()]
        listed = ", ".join(repr(n) for n in names[:20]) if names else "none yet"
        raise InputError(f"There is no lesson set {text!r}; the sets are: {listed}.")
    return found


def add_to_set(store: AnyStore, name: str, refs: Iterable[ItemRef], note: str = "") -> tuple[LessonSet, int]:
    """Add cases to the set called ``name``, creating it if needed; returns the set and how many were added."""
    name = clean_name(name, "lesson-set name")
    lesson = store.lesson_set_by_name(name)
    set_id = lesson.set_id if lesson is not None else store.create_lesson_set(name)
    added = store.add_lesson_items(set_id, refs, note)
    updated = store.get_lesson_set(set_id)
    assert updated is not None  # created or found just above
    return updated, added


def sets_table(store: AnyStore) -> pd.DataFrame:
    """One row a set: name, number of cases, labels in it, last change."""
    rows = []
    for lesson in store.lesson_sets():
        views = resolve_refs(store, lesson.refs)
        labels = sorted({v.label for v in views.values() if v.label})
        rows.append(
            {
                "set": lesson.name,
                "cases": len(lesson.items),
                "labels": ", ".join(labels),
                "missing": sum(v.missing for v in views.values()),
                "updated": lesson.updated_at.strftime("%Y-%m-%d %H:%M") if lesson.updated_at else "",
            }
        )
    return pd.DataFrame(rows, columns=["set", "cases", "labels", "missing", "updated"])


def set_views(store: AnyStore, lesson: LessonSet) -> list[tuple[LessonItem, ItemView]]:
    """The set's items in order, each with what it shows."""
    views = resolve_refs(store, lesson.refs)
    return [(item, views[item.ref]) for item in lesson.items]


__all__ = ["add_to_set", "find_set", "set_views", "sets_table"]
