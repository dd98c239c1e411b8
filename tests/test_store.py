"""The DuckDB store: cases, embeddings, history, web cache, locking between processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from medrag.analysis import Analysis
from medrag.errors import StoreError, StoreLockedError
from medrag.records import Case, GuardVerdict, Neighbour
from medrag.store import Store, schema


def _case(i: int, label: str = "normal", dataset: str = "demo") -> Case:
    return Case(case_id=f"c{i:03d}", label=label, dataset=dataset, image_path=f"/img/{i}.png",
                thumb_path=f"/th/{i}.png", report=f"report {i} {label}", patient_id=f"p{i // 2}", extra={"i": i})


@pytest.fixture(params=["memory", "file"])
def either_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The in-memory store and a file store, in turn (for what the connection handling could change)."""
    if request.param == "memory":
        return Store(":memory:")
    return Store(tmp_path / "medrag.duckdb")


def test_cases_are_stored_once_and_filtered(memory_store: Store) -> None:
    cases = [_case(i, "normal" if i % 2 else "effusion") for i in range(10)]
    assert memory_store.add_cases(cases) == 10
    assert memory_store.add_cases(cases[:3]) == 0
    assert memory_store.count_cases() == 10
    assert memory_store.label_counts() == {"effusion": 5, "normal": 5}
    assert len(memory_store.cases_frame(label="effusion")) == 5
    assert set(memory_store.cases_frame(text="report 7")["case_id"]) == {"c007"}
    found = memory_store.get_case("c004")
    assert found is not None and found.extra == {"i": 4}
    assert memory_store.get_case("nope") is None


def test_embeddings_round_trip_and_missing(memory_store: Store) -> None:
    memory_store.add_cases([_case(i) for i in range(4)])
    memory_store.put_embeddings("enc", "v1", ["c000", "c002"], np.eye(2, 3, dtype=np.float32))
    assert [c.case_id for c in memory_store.cases_missing_embeddings("enc", "v1")] == ["c001", "c003"]
    ids, vectors = memory_store.load_embeddings("enc", "v1")
    assert ids == ["c000", "c002"] and vectors.shape == (2, 3)
    # A new version makes every case "missing" until re-embedded; old vectors can be dropped.
    assert len(memory_store.cases_missing_embeddings("enc", "v2")) == 4
    assert memory_store.drop_embeddings("enc", keep_version="v2") == 2


def test_history_round_trip_notes_and_delete(memory_store: Store) -> None:
    record = Analysis(input_kind="image", input_name="x.png", label="Cardiomegaly",
                      findings={"cardiomegaly": "present"}, neighbours=[Neighbour("c1", 0.9, 1, label="normal")],
                      verdict=GuardVerdict(True, "ok", 0.8, "image"), failures={"web": "offline"},
                      notes=["question cut"], summary_notes=["model gave no label"], measurements={"ctr": 0.41},
                      case_id="c7", timings={"reasoning": 0.1}, finished=True)
    first = memory_store.save_analysis(record)
    second = memory_store.save_analysis(record)
    assert second == first + 1
    loaded = memory_store.get_analysis(first)
    assert loaded is not None and loaded.analysis_id == first
    assert loaded.findings == {"cardiomegaly": "present"}
    assert loaded.neighbours == [Neighbour("c1", 0.9, 1, label="normal")]
    assert loaded.verdict == GuardVerdict(True, "ok", 0.8, "image")
    assert loaded.failures == {"web": "offline"} and loaded.notes == ["question cut"]
    assert loaded.summary_notes == ["model gave no label"] and loaded.measurements == {"ctr": 0.41}
    assert loaded.case_id == "c7" and loaded.meta == {} and loaded.ok
    assert "." not in loaded.created_at  # shown to the second, not the microsecond
    memory_store.update_analysis_notes(first, "teaching case", ["ward", "ward", " quiz "])
    loaded = memory_store.get_analysis(first)
    assert loaded is not None and loaded.tags == ["quiz", "ward"] and loaded.user_notes == "teaching case"
    assert list(memory_store.history_frame()["id"]) == [second, first]
    assert memory_store.delete_analysis(second) and not memory_store.delete_analysis(second)
    assert memory_store.count_analyses() == 1


def test_web_cache(memory_store: Store) -> None:
    assert memory_store.get("q") is None
    memory_store.put("q", "serpapi", [{"title": "t"}])
    memory_store.put("q", "serpapi", [{"title": "u"}])
    assert memory_store.get("q") == [{"title": "u"}]


def test_threads_share_one_connection(either_store: Store) -> None:
    def work(t: int) -> None:
        for j in range(10):
            either_store.save_analysis(Analysis(input_kind="text", question=f"{t}-{j}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert either_store.count_analyses() == 40


def test_failed_transaction_leaves_nothing(memory_store: Store) -> None:
    with pytest.raises(RuntimeError):
        with memory_store.transaction() as cur:
            cur.execute(
                "INSERT INTO cases (case_id, label, dataset, image_path, thumb_path) VALUES ('x','l','d','p','t')"
            )
            raise RuntimeError("crash mid-batch")
    assert memory_store.count_cases() == 0


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
    store.save_analysis(Analysis(input_kind="text", question="after the wait"))
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


def test_memory_stores_are_private_and_keep_their_data_while_idle() -> None:
    first, second = Store(":memory:"), Store(":memory:")
    first.add_cases([_case(1)])
    with first.session():
        first.add_cases([_case(2)])
    # No user is left, yet the data stays: an in-memory database is never closed when idle.
    assert first.count_cases() == 2
    assert second.count_cases() == 0
    del first, second
    # A new one never inherits an earlier, garbage-collected store's data.
    assert Store(":memory:").count_cases() == 0


def test_file_store_unlocks_the_file_when_idle(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    store.add_cases([_case(1)])
    with store.session():
        with pytest.raises(duckdb.IOException):
            _open_elsewhere(path)
    _open_elsewhere(path)  # nobody in this process holds it now
    assert store.count_cases() == 1


def _open_elsewhere(path: Path) -> None:
    """Open the file from another process, as a CLI command would (raises if it is locked)."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1]).close()", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode:
        raise duckdb.IOException(result.stderr.strip().splitlines()[-1])


def test_older_schema_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db.duckdb"
    Store(path).save_analysis(Analysis(input_kind="text", question="before"))
    nxt = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", nxt)
    monkeypatch.setattr(schema, "MIGRATIONS", {nxt: ("ALTER TABLE analyses ADD COLUMN rating INTEGER DEFAULT 0",)})
    store = Store(path)
    with store.cursor() as cur:
        assert cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(nxt),)
        assert cur.execute("SELECT question, rating FROM analyses").fetchall() == [("before", 0)]


def test_a_missing_migration_is_refused_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db.duckdb"
    Store(path)
    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 2)
    monkeypatch.setattr(schema, "MIGRATIONS", {current + 1: ("CREATE TABLE extra_table (x INTEGER)",)})
    with pytest.raises(StoreError, match="No migration to schema version"):
        Store(path)
    monkeypatch.undo()
    with Store(path).cursor() as cur:
        assert cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(current),)
