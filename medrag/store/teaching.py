"""Teaching tables: lesson sets and their ordered items, stored quiz answers, and annotations.

``lesson_sets`` (one row a set, unique name) · ``lesson_items`` (set, position, case or analysis, note) ·
``quiz_answers`` (one row an answer: learner, quiz, question, truth, answer, correct, click) ·
``annotations`` (box or arrow with a label on a case or an analysis image). DuckDB has no cascading
deletes, so deleting a set deletes its items in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pandas as pd

from medrag.errors import InputError
from medrag.store.connection import Database, utcnow
from medrag.teaching.model import (
    Annotation,
    ItemRef,
    LessonItem,
    LessonSet,
    QuizAnswer,
    clean_name,
    clean_note,
)

_SET_COLUMNS = "set_id, name, description, created_at, updated_at"
_ITEM_COLUMNS = "item_id, set_id, position, ref_kind, ref_id, note"
_ANNOTATION_COLUMNS = "annotation_id, ref_kind, ref_id, shape, x0, y0, x1, y1, label"
#: Columns of a quiz-answers table, in the order :meth:`TeachingStore.quiz_answers_frame` returns them.
ANSWER_COLUMNS: tuple[str, ...] = (
    "answer_id",
    "answered_at",
    "quiz_name",
    "learner",
    "mode",
    "session_id",
    "question_no",
    "kind",
    "ref_kind",
    "ref_id",
    "truth",
    "answer",
    "correct",
    "click_x",
    "click_y",
)


def _answer_filters(quiz_name: str | None, learner: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if quiz_name:
        where.append("quiz_name = ?")
        params.append(quiz_name)
    if learner:
        where.append("learner = ?")
        params.append(learner)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _item(row: Sequence[Any]) -> LessonItem:
    return LessonItem(
        item_id=int(row[0]),
        set_id=int(row[1]),
        position=int(row[2]),
        ref=ItemRef(row[3], str(row[4])),
        note=row[5] or "",
    )


def _annotation(row: Sequence[Any]) -> Annotation:
    return Annotation(
        annotation_id=int(row[0]),
        ref=ItemRef(row[1], str(row[2])),
        shape=row[3],
        x0=float(row[4]),
        y0=float(row[5]),
        x1=float(row[6]),
        y1=float(row[7]),
        label=row[8] or "",
    )


class TeachingQueries:
    """Reads and writes ``lesson_sets``, ``lesson_items``, ``quiz_answers`` and ``annotations``.

    Portable SQL with ``?`` placeholders, shared by the DuckDB file (:class:`TeachingStore`) and the
    PostgreSQL store (:class:`medrag.store.pg.teaching.PgTeaching`): each gives the cursors and the one
    list-membership test the two dialects spell differently.
    """

    #: ``expr`` is one of the values of a single list parameter (DuckDB's spelling).
    IN_LIST_SQL = "list_contains(?, {expr})"

    def _tq_cursor(self) -> AbstractContextManager[Any]:
        return self.cursor()  # type: ignore[attr-defined]  # the store's own: DuckDB takes ? as written

    def _tq_transaction(self) -> AbstractContextManager[Any]:
        return self.transaction()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------------------- lesson sets
    def create_lesson_set(self, name: str, description: str = "") -> int:
        """A new, empty lesson set; returns its id. An :class:`InputError` if the name is taken."""
        name, description = clean_name(name, "lesson-set name"), clean_note(description)
        now = utcnow()
        with self._tq_transaction() as cur:
            if cur.execute("SELECT 1 FROM lesson_sets WHERE lower(name) = lower(?)", [name]).fetchone():
                raise InputError(f"A lesson set named {name!r} exists already; choose another name.")
            row = cur.execute(
                "INSERT INTO lesson_sets (name, description, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "RETURNING set_id",
                [name, description, now, now],
            ).fetchone()
        assert row is not None  # INSERT … RETURNING always yields the new row
        return int(row[0])

    def rename_lesson_set(self, set_id: int, name: str, description: str | None = None) -> None:
        """Give a set a new name (and description, when given)."""
        name = clean_name(name, "lesson-set name")
        with self._tq_transaction() as cur:
            clash = cur.execute(
                "SELECT set_id FROM lesson_sets WHERE lower(name) = lower(?) AND set_id <> ?", [name, int(set_id)]
            ).fetchone()
            if clash:
                raise InputError(f"A lesson set named {name!r} exists already; choose another name.")
            self._require_set(cur, set_id)
            cur.execute(
                "UPDATE lesson_sets SET name = ?, updated_at = ? WHERE set_id = ?", [name, utcnow(), int(set_id)]
            )
            if description is not None:
                cur.execute(
                    "UPDATE lesson_sets SET description = ? WHERE set_id = ?", [clean_note(description), int(set_id)]
                )

    def delete_lesson_set(self, set_id: int) -> bool:
        """Delete a set and its items (the cases themselves stay in the library); whether it existed."""
        with self._tq_transaction() as cur:
            cur.execute("DELETE FROM lesson_items WHERE set_id = ?", [int(set_id)])
            gone = cur.execute("DELETE FROM lesson_sets WHERE set_id = ? RETURNING set_id", [int(set_id)]).fetchall()
        return bool(gone)

    def lesson_sets(self) -> list[LessonSet]:
        """Every lesson set with its items, by name."""
        with self._tq_cursor() as cur:
            sets = cur.execute(f"SELECT {_SET_COLUMNS} FROM lesson_sets ORDER BY lower(name)").fetchall()
            items = cur.execute(
                f"SELECT {_ITEM_COLUMNS} FROM lesson_items ORDER BY set_id, position, item_id"
            ).fetchall()
        by_set: dict[int, list[LessonItem]] = {}
        for row in items:
            by_set.setdefault(int(row[1]), []).append(_item(row))
        return [LessonSet(int(r[0]), r[1], r[2] or "", r[3], r[4], tuple(by_set.get(int(r[0]), ()))) for r in sets]

    def get_lesson_set(self, set_id: int) -> LessonSet | None:
        """One set with its items in order, or None."""
        return next((s for s in self.lesson_sets() if s.set_id == int(set_id)), None)

    def lesson_set_by_name(self, name: str) -> LessonSet | None:
        """The set with this name (case-insensitive), or None."""
        wanted = " ".join(str(name).split()).lower()
        return next((s for s in self.lesson_sets() if s.name.lower() == wanted), None)

    # ------------------------------------------------------------------------------------- lesson items
    def add_lesson_items(self, set_id: int, refs: Iterable[ItemRef], note: str = "") -> int:
        """Append cases or analyses to a set (one already in it is skipped); returns how many were added."""
        note = clean_note(note)
        now = utcnow()
        with self._tq_transaction() as cur:
            self._require_set(cur, set_id)
            present = {
                (r[0], r[1])
                for r in cur.execute(
                    "SELECT ref_kind, ref_id FROM lesson_items WHERE set_id = ?", [int(set_id)]
                ).fetchall()
            }
            last = cur.execute(
                "SELECT coalesce(max(position), 0) FROM lesson_items WHERE set_id = ?", [int(set_id)]
            ).fetchone()
            position = int(last[0]) if last else 0
            added = 0
            for ref in refs:
                if (ref.kind, ref.ref_id) in present:
                    continue
                present.add((ref.kind, ref.ref_id))
                position += 1
                added += 1
                cur.execute(
                    "INSERT INTO lesson_items (set_id, position, ref_kind, ref_id, note, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [int(set_id), position, ref.kind, ref.ref_id, note, now],
                )
            if added:
                cur.execute("UPDATE lesson_sets SET updated_at = ? WHERE set_id = ?", [now, int(set_id)])
        return added

    def update_lesson_notes(self, notes: dict[int, str]) -> None:
        """Set the teaching note of several items at once (item id → note)."""
        cleaned = {int(k): clean_note(v) for k, v in notes.items()}
        with self._tq_transaction() as cur:
            for item_id, note in cleaned.items():
                cur.execute("UPDATE lesson_items SET note = ? WHERE item_id = ?", [note, item_id])

    def remove_lesson_item(self, item_id: int) -> bool:
        """Take an item out of its set (the positions after it close up); whether it existed."""
        with self._tq_transaction() as cur:
            row = cur.execute("DELETE FROM lesson_items WHERE item_id = ? RETURNING set_id", [int(item_id)]).fetchone()
            if row is None:
                return False
            self._renumber(cur, int(row[0]))
        return True

    def reorder_lesson_items(self, set_id: int, item_ids: Sequence[int]) -> None:
        """Put a set's items in this order (every item of the set, each once)."""
        wanted = [int(i) for i in item_ids]
        with self._tq_transaction() as cur:
            self._require_set(cur, set_id)
            have = [
                int(r[0])
                for r in cur.execute(
                    "SELECT item_id FROM lesson_items WHERE set_id = ? ORDER BY position, item_id", [int(set_id)]
                ).fetchall()
            ]
            if sorted(have) != sorted(wanted) or len(set(wanted)) != len(wanted):
                raise InputError(
                    "The new order must list every item of the set exactly once; reload the set and try again."
                )
            for position, item_id in enumerate(wanted, start=1):
                cur.execute("UPDATE lesson_items SET position = ? WHERE item_id = ?", [position, item_id])
            cur.execute("UPDATE lesson_sets SET updated_at = ? WHERE set_id = ?", [utcnow(), int(set_id)])

    def move_lesson_item(self, item_id: int, offset: int) -> None:
        """Move an item ``offset`` places (negative: earlier), stopping at either end."""
        with self._tq_cursor() as cur:
            row = cur.execute("SELECT set_id FROM lesson_items WHERE item_id = ?", [int(item_id)]).fetchone()
            if row is None:
                raise InputError("That item is no longer in the lesson set; reload the page.")
            order = [
                int(r[0])
                for r in cur.execute(
                    "SELECT item_id FROM lesson_items WHERE set_id = ? ORDER BY position, item_id", [int(row[0])]
                ).fetchall()
            ]
        index = order.index(int(item_id))
        target = min(max(index + int(offset), 0), len(order) - 1)
        order.insert(target, order.pop(index))
        self.reorder_lesson_items(int(row[0]), order)

    def _require_set(self, cur: Any, set_id: int) -> None:
        if cur.execute("SELECT 1 FROM lesson_sets WHERE set_id = ?", [int(set_id)]).fetchone() is None:
            raise InputError(f"There is no lesson set #{set_id}; it may have been deleted. Reload the page.")

    @staticmethod
    def _renumber(cur: Any, set_id: int) -> None:
        rows = cur.execute(
            "SELECT item_id FROM lesson_items WHERE set_id = ? ORDER BY position, item_id", [set_id]
        ).fetchall()
        for position, (item_id,) in enumerate(rows, start=1):
            cur.execute("UPDATE lesson_items SET position = ? WHERE item_id = ?", [position, item_id])

    # ------------------------------------------------------------------------------------- quiz answers
    def save_quiz_answers(self, answers: Sequence[QuizAnswer]) -> list[int]:
        """Store answers (one transaction); returns their ids."""
        ids: list[int] = []
        with self._tq_transaction() as cur:
            for a in answers:
                click_x, click_y = a.click if a.click is not None else (None, None)
                row = cur.execute(
                    "INSERT INTO quiz_answers (session_id, quiz_name, learner, mode, question_no, kind, ref_kind, "
                    "ref_id, truth, answer, correct, click_x, click_y, answered_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING answer_id",
                    [
                        a.session_id,
                        a.quiz_name,
                        a.learner,
                        a.mode,
                        int(a.question_no),
                        a.kind,
                        a.ref.kind,
                        a.ref.ref_id,
                        a.truth,
                        a.answer,
                        bool(a.correct),
                        click_x,
                        click_y,
                        a.answered_at or utcnow(),
                    ],
                ).fetchone()
                assert row is not None
                ids.append(int(row[0]))
        return ids

    def quiz_answers(self, *, quiz_name: str | None = None, learner: str | None = None) -> list[QuizAnswer]:
        """Stored answers, oldest first, optionally for one quiz and/or one learner."""
        where, params = _answer_filters(quiz_name, learner)
        with self._tq_cursor() as cur:
            rows = cur.execute(
                f"SELECT {', '.join(ANSWER_COLUMNS)} FROM quiz_answers{where} ORDER BY answered_at, answer_id", params
            ).fetchall()
        out: list[QuizAnswer] = []
        for (answer_id, answered_at, quiz, who, mode, session_id, question_no, kind, ref_kind, ref_id, truth, answer,
             correct, click_x, click_y) in rows:
            click = None if click_x is None or click_y is None else (float(click_x), float(click_y))
            out.append(QuizAnswer(
                session_id=str(session_id), quiz_name=str(quiz), learner=str(who), mode=mode,
                question_no=int(question_no), kind=kind, ref=ItemRef(ref_kind, str(ref_id)), truth=truth or "",
                answer=answer or "", correct=bool(correct), click=click, answered_at=answered_at,
                answer_id=int(answer_id),
            ))
        return out

    def quiz_answers_frame(self, *, quiz_name: str | None = None, learner: str | None = None) -> pd.DataFrame:
        """Stored answers as a table (:data:`ANSWER_COLUMNS`), oldest first."""
        where, params = _answer_filters(quiz_name, learner)
        sql = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM quiz_answers{where} ORDER BY answered_at, answer_id"
        with self._tq_cursor() as cur:
            rows = cur.execute(sql, params).fetchall()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(ANSWER_COLUMNS))
        # The dtypes DuckDB's own frames had: timestamps, floats (NaN for no click), booleans, integers.
        frame["answered_at"] = pd.to_datetime(frame["answered_at"])
        for column in ("click_x", "click_y"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        frame["correct"] = frame["correct"].astype(bool)
        for column in ("answer_id", "question_no"):
            frame[column] = frame[column].astype("int64")
        return frame

    def quiz_names(self) -> list[str]:
        """The quizzes that have answers, most recent first."""
        with self._tq_cursor() as cur:
            rows = cur.execute(
                "SELECT quiz_name FROM quiz_answers GROUP BY quiz_name ORDER BY max(answered_at) DESC"
            ).fetchall()
        return [r[0] for r in rows]

    def delete_quiz_answers(self, quiz_name: str) -> int:
        """Forget every answer to one quiz; returns how many rows went."""
        with self._tq_transaction() as cur:
            return len(
                cur.execute("DELETE FROM quiz_answers WHERE quiz_name = ? RETURNING answer_id", [quiz_name]).fetchall()
            )

    # ------------------------------------------------------------------------------------- annotations
    def add_annotation(self, annotation: Annotation) -> int:
        """Store an educator's annotation; returns its id."""
        a = annotation.normalised()
        label = clean_name(a.label, "annotation label") if a.label.strip() else ""
        with self._tq_transaction() as cur:
            row = cur.execute(
                "INSERT INTO annotations (ref_kind, ref_id, shape, x0, y0, x1, y1, label, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING annotation_id",
                [
                    a.ref.kind,
                    a.ref.ref_id,
                    a.shape,
                    float(a.x0),
                    float(a.y0),
                    float(a.x1),
                    float(a.y1),
                    label,
                    utcnow(),
                ],
            ).fetchone()
        assert row is not None
        return int(row[0])

    def annotations_for(self, refs: Iterable[ItemRef]) -> list[Annotation]:
        """The stored annotations of these cases or analyses, oldest first."""
        keys = [ref.key for ref in refs]
        if not keys:
            return []
        with self._tq_cursor() as cur:
            rows = cur.execute(
                f"SELECT {_ANNOTATION_COLUMNS} FROM annotations WHERE "
                + self.IN_LIST_SQL.format(expr="ref_kind || ':' || ref_id")
                + " ORDER BY created_at, annotation_id",
                [keys],
            ).fetchall()
        return [_annotation(r) for r in rows]

    def delete_annotation(self, annotation_id: int) -> bool:
        """Delete one annotation; whether it existed."""
        with self._tq_transaction() as cur:
            gone = cur.execute(
                "DELETE FROM annotations WHERE annotation_id = ? RETURNING annotation_id", [int(annotation_id)]
            ).fetchall()
        return bool(gone)


class TeachingStore(TeachingQueries, Database):
    """The teaching tables in the DuckDB file."""


__all__ = ["ANSWER_COLUMNS", "TeachingQueries", "TeachingStore"]
