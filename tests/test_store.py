"""The DuckDB store: cases, embeddings, history, web cache, locking between processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medrag.errors import StoreError, StoreLockedError
from medrag.records import Case
from medrag.store import AnalysisRecord, Store


def _case(i: int, label: str = "normal", dataset: str = "demo") -> Case:
    return Case(case_id=f"c{i:03d}", label=label, dataset=dataset, image_path=f"/img/{i}.png",
                thumb_path=f"/th/{i}.png", report=f"report {i} {label}", patient_id=f"p{i // 2}", extra={"i": i})


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "medrag.duckdb")


def test_cases_are_stored_once_and_filtered(store: Store) -> None:
    cases = [_case(i, "normal" if i % 2 else "effusion") for i in range(10)]
    assert store.add_cases(cases) == 10
    assert store.add_cases(cases[:3]) == 0
    assert store.count_cases() == 10
    assert store.label_counts() == {"effusion": 5, "normal": 5}
    assert len(store.cases_frame(label="effusion")) == 5
    assert set(store.cases_frame(text="report 7")["case_id"]) == {"c007"}
    assert store.get_case("c004").extra == {"i": 4}
    assert store.get_case("nope") is None


def test_embeddings_round_trip_and_missing(store: Store) -> None:
    store.add_cases([_case(i) for i in range(4)])
    store.put_embeddings("enc", "v1", ["c000", "c002"], np.eye(2, 3, dtype=np.float32))
    assert [c.case_id for c in store.cases_missing_embeddings("enc", "v1")] == ["c001", "c003"]
    ids, vectors = store.load_embeddings("enc", "v1")
    assert ids == ["c000", "c002"] and vectors.shape == (2, 3)
    # A new version makes every case "missing" until re-embedded; old vectors can be dropped.
    assert len(store.cases_missing_embeddings("enc", "v2")) == 4
    assert store.drop_embeddings("enc", keep_version="v2") == 2


def test_history_round_trip_notes_and_delete(store: Store) -> None:
    record = AnalysisRecord(input_kind="image", input_name="x.png", label="Cardiomegaly",
                            findings={"cardiomegaly": "present"}, neighbours=[{"case_id": "c1", "score": 0.9}],
                            timings={"reasoning": 0.1})
    first = store.save_analysis(record)
    second = store.save_analysis(record)
    assert second == first + 1
    row = store.get_analysis(first)
    assert row["findings"] == {"cardiomegaly": "present"}
    assert row["neighbours"][0]["score"] == 0.9
    store.update_analysis_notes(first, "teaching case", ["ward", "ward", " quiz "])
    assert store.get_analysis(first)["tags"] == ["quiz", "ward"]
    assert list(store.history_frame()["id"]) == [second, first]
    assert store.delete_analysis(second) and not store.delete_analysis(second)
    assert store.count_analyses() == 1


def test_web_cache(store: Store) -> None:
    assert store.get("q") is None
    store.put("q", "serpapi", [{"title": "t"}])
    store.put("q", "serpapi", [{"title": "u"}])
    assert store.get("q") == [{"title": "u"}]


def test_threads_share_one_connection(store: Store) -> None:
    def work(t: int) -> None:
        for j in range(10):
            store.save_analysis(AnalysisRecord(input_kind="text", question=f"{t}-{j}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_analyses() == 40


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as cur:
            cur.execute("INSERT INTO cases (case_id, label, dataset, image_path, thumb_path) VALUES ('x','l','d','p','t')")
            raise RuntimeError("crash mid-batch")
    assert store.count_cases() == 0


_HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_other_process_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    Store(path)  # create the schema, then release the file
    holder = _hold_lock(path, 1.5)
    started = time.monotonic()
    store = Store(path, lock_timeout=30)
    store.save_analysis(AnalysisRecord(input_kind="text", question="after the wait"))
    holder.wait(timeout=10)
    assert time.monotonic() - started >= 0.5  # it really waited for the other process
    assert store.count_analyses() == 1


def test_gives_up_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    Store(path)
    holder = _hold_lock(path, 5)
    try:
        with pytest.raises(StoreLockedError, match="held by another MedRAG process"):
            Store(path, lock_timeout=0.5)
    finally:
        holder.kill()
        holder.wait()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    with store.cursor() as cur:
        cur.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this MedRAG"):
        Store(path)
