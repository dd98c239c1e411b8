"""Change stamps: a cheap value that changes whenever the library's vectors change.

An app process keeps its FAISS index as a cache of the store's vectors; it compares the stamp it built the
cache at with :meth:`StampStore.embeddings_stamp` to know when another process (an import, a replica)
added or replaced vectors, without reading them.
"""

from __future__ import annotations

from medrag.store.connection import Database


class StampStore(Database):
    """The change stamp of the ``embeddings`` table."""

    def embeddings_stamp(self) -> tuple[int, int]:
        """(number of vectors, highest row id): changes whenever vectors are added, replaced or dropped.

        DuckDB gives rows written later higher row ids, so a replace (delete + insert) raises the second
        number even when the count stays the same.
        """
        with self.cursor() as cur:
            row = cur.execute("SELECT count(*), coalesce(max(rowid), -1) FROM embeddings").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, -1)
