"""Lesson sets, quiz answers and annotations in the PostgreSQL store: the DuckDB store's queries, unchanged.

:class:`~medrag.store.teaching.TeachingQueries` writes portable SQL with ``?`` placeholders; here each
cursor turns them into psycopg's ``%s`` (:func:`~medrag.store.pg.connection.pg_sql`), and the one
list-membership test is spelled ``= ANY(…)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from medrag.store.pg.connection import PgDatabase, pg_sql
from medrag.store.teaching import TeachingQueries


class _QmarkCursor:
    """A psycopg cursor that takes ``?`` placeholders (only what the teaching queries use)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _QmarkCursor:
        self._cursor.execute(pg_sql(sql), list(params) if params is not None else None)
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


class PgTeaching(TeachingQueries, PgDatabase):
    """The teaching tables of a PostgreSQL store."""

    IN_LIST_SQL = "{expr} = ANY(?)"

    @contextmanager
    def _tq_cursor(self) -> Iterator[_QmarkCursor]:
        with self.cursor() as cursor:
            yield _QmarkCursor(cursor)

    @contextmanager
    def _tq_transaction(self) -> Iterator[_QmarkCursor]:
        with self.transaction() as cursor:
            yield _QmarkCursor(cursor)


__all__ = ["PgTeaching"]
