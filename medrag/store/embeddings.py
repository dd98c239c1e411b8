"""Case vectors per encoder version: storing, loading, dropping, and finding cases still to embed."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from medrag.errors import StoreError
from medrag.records import Case
from medrag.store.cases import case_select, row_to_case
from medrag.store.connection import Database


def insert_embeddings(
    cur: duckdb.DuckDBPyConnection, encoder: str, version: str, case_ids: Sequence[str], vectors: np.ndarray
) -> None:
    """Replace the vectors of ``case_ids`` for ``encoder`` inside the caller's transaction (one Arrow insert)."""
    import pyarrow as pa

    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    table = pa.table({
        "case_id": pa.array(list(case_ids), pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]).cast(
            pa.list_(pa.float32())
        ),
    })
    cur.execute("DELETE FROM embeddings WHERE encoder = ? AND list_contains(?, case_id)", [encoder, list(case_ids)])
    cur.register("new_vectors", table)
    cur.execute("INSERT INTO embeddings SELECT case_id, ?, ?, vector FROM new_vectors", [encoder, version])
    cur.unregister("new_vectors")


class EmbeddingStore(Database):
    """Reads and writes the ``embeddings`` table."""

    def cases_missing_embeddings(self, encoder: str, version: str) -> list[Case]:
        """Cases with no vector for this encoder version (what an incremental re-index must embed)."""
        with self.cursor() as cur:
            rows = cur.execute(
                f"SELECT {case_select('c.')} FROM cases c LEFT JOIN embeddings e "
                "ON e.case_id = c.case_id AND e.encoder = ? AND e.version = ? "
                "WHERE e.case_id IS NULL ORDER BY c.added_at, c.case_id",
                [encoder, version],
            ).fetchall()
        return [row_to_case(r, self.data_root) for r in rows]

    def put_embeddings(self, encoder: str, version: str, case_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (replacing any older version's) in one transaction."""
        if len(case_ids) != len(vectors):
            raise StoreError("put_embeddings: ids and vectors differ in length (a bug: please report it).")
        if not case_ids:
            return
        with self.transaction() as cur:
            insert_embeddings(cur, encoder, version, case_ids, vectors)

    def drop_embeddings(self, encoder: str, keep_version: str | None = None) -> int:
        """Delete an encoder's vectors (all, or all but ``keep_version``); returns how many."""
        with self.transaction() as cur:
            if keep_version is None:
                n = cur.execute("SELECT count(*) FROM embeddings WHERE encoder = ?", [encoder]).fetchall()[0][0]
                cur.execute("DELETE FROM embeddings WHERE encoder = ?", [encoder])
            else:
                n = cur.execute(
                    "SELECT count(*) FROM embeddings WHERE encoder = ? AND version <> ?", [encoder, keep_version]
                ).fetchall()[0][0]
                cur.execute("DELETE FROM embeddings WHERE encoder = ? AND version <> ?", [encoder, keep_version])
        return int(n)

    def load_embeddings(self, encoder: str, version: str) -> tuple[list[str], np.ndarray]:
        """All (case ids, vectors) of one encoder version, in library order."""
        with self.cursor() as cur:
            # Through Arrow: Python float lists cost 1.1 GiB and 4.7 s at 100k vectors (bench_memory.py).
            table = cur.sql(
                "SELECT e.case_id, e.vector FROM embeddings e JOIN cases c USING (case_id) "
                "WHERE e.encoder = ? AND e.version = ? ORDER BY c.added_at, c.case_id",
                params=[encoder, version],
            ).to_arrow_table()
        if table.num_rows == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        vectors = table.column("vector").combine_chunks()
        flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return table.column("case_id").to_pylist(), np.ascontiguousarray(flat.reshape(table.num_rows, -1))
