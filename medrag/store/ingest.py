"""Ingest bookkeeping: the source files already read (``sources``) and the all-or-nothing ingest batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medrag.errors import StoreError
from medrag.records import Case
from medrag.store.cases import CASE_COLUMNS, case_row
from medrag.store.connection import Database, utcnow
from medrag.store.embeddings import insert_embeddings


class IngestStore(Database):
    """Writes a batch of cases, their source fingerprints and vectors together; reads the fingerprints."""

    def add_ingest_batch(
        self,
        cases: Sequence[Case],
        sizes: Sequence[tuple[int, int]],
        sources: Sequence[tuple[str, int, int, str]],
        embeddings: tuple[str, str, Sequence[str], np.ndarray] | None = None,
    ) -> int:
        """Cases, their source fingerprints and (optionally) vectors in ONE transaction; returns new cases.

        ``sources`` rows are (source_key, size, mtime_ns, case_id); ``embeddings`` is
        (encoder, version, case_ids, vectors). A crash leaves either all of a batch or none of it.
        """
        if len(cases) != len(sizes):
            raise StoreError("add_ingest_batch: cases and sizes differ in length (a bug: please report it).")
        now = utcnow()
        case_frame = pd.DataFrame(
            [case_row(case, size, now) for case, size in zip(cases, sizes, strict=True)], columns=list(CASE_COLUMNS)
        )
        source_frame = pd.DataFrame(list(sources), columns=["source_key", "size", "mtime_ns", "case_id"])
        columns = ", ".join(CASE_COLUMNS)
        # Whole-frame inserts: executemany costs about 4 ms a row in DuckDB, a frame a few ms in all.
        with self.transaction() as cur:
            before = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
            if len(case_frame):
                cur.register("new_cases", case_frame)
                cur.execute(
                    f"INSERT INTO cases ({columns}) SELECT {columns} FROM new_cases ON CONFLICT (case_id) DO NOTHING"
                )
                cur.unregister("new_cases")
            if len(source_frame):
                cur.register("new_sources", source_frame)
                cur.execute(
                    "INSERT OR REPLACE INTO sources SELECT source_key, size, mtime_ns, case_id FROM new_sources"
                )
                cur.unregister("new_sources")
            if embeddings is not None and len(embeddings[2]):
                insert_embeddings(cur, *embeddings)
            after = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
        return int(after - before)

    def known_sources(self) -> dict[str, tuple[int, int]]:
        """source_key → (size, mtime_ns) of every file already ingested (to skip unchanged files)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT source_key, size, mtime_ns FROM sources").fetchall()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}
