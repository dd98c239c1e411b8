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
from medrag.store.paths import is_absolute, to_absolute, to_stored


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
        (encoder, version, case_ids, vectors). A crash leaves either all of a batch or none of it. Source
        files under the data folder (the demo library) are keyed relative to it, so a moved folder's files
        are still known as unchanged.
        """
        if len(cases) != len(sizes):
            raise StoreError("add_ingest_batch: cases and sizes differ in length (a bug: please report it).")
        now = utcnow()
        case_frame = pd.DataFrame(
            [case_row(case, size, now, self.data_root) for case, size in zip(cases, sizes, strict=True)],
            columns=list(CASE_COLUMNS),
        )
        source_frame = pd.DataFrame(
            [(_stored_key(self, key), size, mtime, cid) for key, size, mtime, cid in sources],
            columns=["source_key", "size", "mtime_ns", "case_id"],
        )
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
        return {_absolute_key(self, r[0]): (int(r[1]), int(r[2])) for r in rows}

    def correct_folder_labels(self, rows: Sequence[tuple[str, str, str]]) -> int:
        """Relabel, for each (source_key, folder label, new label), the case that file became if its label is
        still that folder label (a case labelled otherwise, by hand or by another source, is left alone).
        Returns the cases relabelled; one transaction."""
        frame = pd.DataFrame([(_stored_key(self, key), old, new) for key, old, new in rows],
                             columns=["source_key", "old_label", "new_label"])
        with self.transaction() as cur:
            cur.register("relabel", frame)
            changed = cur.execute(
                "UPDATE cases SET label = r.new_label FROM relabel r JOIN sources s ON s.source_key = r.source_key "
                "WHERE cases.case_id = s.case_id AND cases.label = r.old_label AND r.new_label <> r.old_label"
            ).fetchall()
            cur.unregister("relabel")
        return int(changed[0][0]) if changed else 0


def _stored_key(store: Database, key: str) -> str:
    # Only plain file paths are keys to relativise ("parquet:<file>#<row>" keys stay as they are).
    return to_stored(store.data_root, key) if is_absolute(key) else key


def _absolute_key(store: Database, key: str) -> str:
    return key if ":" in key.split("/", 1)[0] else to_absolute(store.data_root, key)
