"""The store interface on both backends (issue #14 item 1): DuckDB in memory and PostgreSQL.

Each test gets a fresh, empty store from ``any_store`` (tests/pgserver.py), once per backend; the
PostgreSQL runs skip with the reason when no throwaway server can start. Also: PostgreSQL-only behaviour
(schema versions, migrations, two processes writing at once, an unreachable server) and the choice of
backend from the settings (``MEDRAG_DATABASE_URL`` / ``--database-url``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrag.analysis import Analysis
from medrag.config import Settings, load_settings
from medrag.errors import ConfigError, StoreError
from medrag.records import Case, GuardVerdict, Neighbour
from medrag.store import Store
from medrag.store.analyses import HISTORY_COLUMNS
from pgserver import fresh_database, reset_database

REPO = Path(__file__).resolve().parents[1]


def _case(i: int, label: str = "normal", dataset: str = "demo") -> Case:
    return Case(case_id=f"c{i:03d}", label=label, dataset=dataset, image_path=f"/img/{i}.png",
                thumb_path=f"/th/{i}.png", report=f"report {i} {label}", patient_id=f"p{i // 2}", extra={"i": i})


# ----------------------------------------------------------------------------- cases, vectors, ingest
def test_cases_are_stored_once_and_filtered(any_store: Any) -> None:
    cases = [_case(i, "normal" if i % 2 else "effusion", "demo" if i < 7 else "other") for i in range(10)]
    assert any_store.add_cases(cases) == 10
    assert any_store.add_cases(cases[:3]) == 0
    assert any_store.count_cases() == 10
    assert any_store.label_counts() == {"effusion": 5, "normal": 5}
    assert any_store.dataset_counts() == {"demo": 7, "other": 3}
    assert len(any_store.cases_frame(label="effusion")) == 5
    assert set(any_store.cases_frame(text="report 7")["case_id"]) == {"c007"}
    assert list(any_store.cases_frame(limit=3)["case_id"]) == ["c000", "c001", "c002"]
    found = any_store.get_case("c004")
    assert found is not None and found.extra == {"i": 4} and found.image_path == "/img/4.png"
    assert any_store.get_case("nope") is None
    assert any_store.existing_case_ids(["c001", "zz", "c001"]) == {"c001"}
    assert any_store.case_ids_where(label="normal", dataset="other") == {"c007", "c009"}
    assert set(any_store.get_cases(["c001", "c002", "x"])) == {"c001", "c002"}


def test_paths_under_the_data_folder_come_back_absolute(any_store: Any, tmp_path: Path) -> None:
    root = any_store.data_root or tmp_path
    case = Case(case_id="p1", label="normal", dataset="demo", image_path=str(root / "images" / "a.png"),
                thumb_path=str(root / "thumbs" / "ab" / "a.jpg"))
    any_store.add_cases([case])
    assert any_store.case_files() == [("p1", case.image_path, case.thumb_path)]
    new_thumb = str(root / "thumbs" / "cd" / "b.jpg")
    any_store.set_thumb_paths({"p1": new_thumb})
    loaded = any_store.get_case("p1")
    assert loaded is not None and loaded.thumb_path == new_thumb
    assert list(any_store.cases_frame()["thumb_path"]) == [new_thumb]


def test_embeddings_round_trip_missing_and_stamp(any_store: Any) -> None:
    any_store.add_cases([_case(i) for i in range(4)])
    empty = any_store.embeddings_stamp()
    vectors = np.array([[0.1, -2.5, 3.25], [1e-7, 0.0, 7.0]], dtype=np.float32)
    any_store.put_embeddings("enc", "v1", ["c000", "c002"], vectors)
    first = any_store.embeddings_stamp()
    assert first != empty and first[0] == 2
    assert [c.case_id for c in any_store.cases_missing_embeddings("enc", "v1")] == ["c001", "c003"]
    ids, loaded = any_store.load_embeddings("enc", "v1")
    assert ids == ["c000", "c002"] and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, vectors)  # float32 exactly, not rounded
    # Replacing a vector keeps the count but still changes the stamp (a replica must reload it).
    any_store.put_embeddings("enc", "v1", ["c000"], np.ones((1, 3), dtype=np.float32))
    replaced = any_store.embeddings_stamp()
    assert replaced[0] == 2 and replaced != first
    assert len(any_store.cases_missing_embeddings("enc", "v2")) == 4
    assert any_store.drop_embeddings("enc", keep_version="v2") == 2
    assert any_store.embeddings_stamp()[0] == 0
    assert any_store.load_embeddings("enc", "v1")[0] == []
    with pytest.raises(StoreError, match="differ in length"):
        any_store.put_embeddings("enc", "v1", ["c000"], np.ones((2, 3), dtype=np.float32))


def test_ingest_batch_is_all_or_nothing_and_knows_its_sources(any_store: Any) -> None:
    cases = [_case(i) for i in range(3)]
    sources = [(f"/src/{i}.png", 100 + i, 10**18 + i, f"c{i:03d}") for i in range(3)]
    embeddings = ("enc", "v1", ["c000", "c001", "c002"], np.eye(3, dtype=np.float32))
    assert any_store.add_ingest_batch(cases, [(10, 20)] * 3, sources, embeddings) == 3
    assert any_store.known_sources() == {f"/src/{i}.png": (100 + i, 10**18 + i) for i in range(3)}
    assert any_store.load_embeddings("enc", "v1")[0] == ["c000", "c001", "c002"]
    # The same batch again adds no case and replaces the fingerprints.
    again = [("/src/0.png", 999, 1, "c000")]
    assert any_store.add_ingest_batch(cases[:1], [(10, 20)], again) == 0
    assert any_store.known_sources()["/src/0.png"] == (999, 1)
    assert int(any_store.cases_frame()["width"].iloc[0]) == 10
    with pytest.raises(StoreError, match="differ in length"):
        any_store.add_ingest_batch(cases, [(1, 1)], [])


def test_failed_transaction_leaves_nothing(any_store: Any) -> None:
    with pytest.raises(RuntimeError):
        with any_store.transaction() as cur:
            cur.execute(
                "INSERT INTO cases (case_id, label, dataset, image_path, thumb_path) VALUES ('x','l','d','p','t')"
            )
            raise RuntimeError("crash mid-batch")
    assert any_store.count_cases() == 0


# ----------------------------------------------------------------------------- history, web cache
def test_history_round_trip_notes_and_delete(any_store: Any) -> None:
    record = Analysis(input_kind="image", input_name="x.png", label="Cardiomegaly",
                      findings={"cardiomegaly": "present"}, neighbours=[Neighbour("c1", 0.9, 1, label="normal")],
                      verdict=GuardVerdict(True, "ok", 0.8, "image"), failures={"web": "offline"},
                      notes=["question cut"], summary_notes=["model gave no label"], measurements={"ctr": 0.41},
                      case_id="c7", timings={"reasoning": 0.1}, finished=True)
    first = any_store.save_analysis(record)
    second = any_store.save_analysis(record)
    assert second == first + 1
    loaded = any_store.get_analysis(first)
    assert loaded is not None and loaded.analysis_id == first
    assert loaded.findings == {"cardiomegaly": "present"}
    assert loaded.neighbours == [Neighbour("c1", 0.9, 1, label="normal")]
    assert loaded.verdict == GuardVerdict(True, "ok", 0.8, "image")
    assert loaded.failures == {"web": "offline"} and loaded.notes == ["question cut"]
    assert loaded.summary_notes == ["model gave no label"] and loaded.measurements == {"ctr": 0.41}
    assert loaded.case_id == "c7" and loaded.meta == {} and loaded.ok
    assert "." not in loaded.created_at  # shown to the second, not the microsecond
    assert any_store.get_analysis(first + 100) is None
    any_store.update_analysis_notes(first, "teaching case", ["ward", "ward", " quiz "])
    loaded = any_store.get_analysis(first)
    assert loaded is not None and loaded.tags == ["quiz", "ward"] and loaded.user_notes == "teaching case"
    assert list(any_store.history_frame()["id"]) == [second, first]
    assert list(any_store.history_frame(search="TEACHING")["id"]) == [first]
    assert any_store.delete_analysis(second) and not any_store.delete_analysis(second)
    assert any_store.count_analyses() == 1


def test_web_cache(any_store: Any) -> None:
    assert any_store.get("q") is None
    any_store.put("q", "serpapi", [{"title": "t"}])
    any_store.put("q", "serpapi", [{"title": "u"}])
    assert any_store.get("q") == [{"title": "u"}]


def test_threads_write_the_history_together(any_store: Any) -> None:
    def work(t: int) -> None:
        for j in range(10):
            any_store.save_analysis(Analysis(input_kind="text", question=f"{t}-{j}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any_store.count_analyses() == 40
    assert set(any_store.history_frame()["question"]) == {f"{t}-{j}" for t in range(4) for j in range(10)}


N = 31
LABELS = ("normal", "cardiomegaly", "pneumonia")
BACKENDS = ("evidence", "openai")


def _analysis(i: int) -> Analysis:
    return Analysis(
        input_kind="image" if i % 2 else "text", input_name=f"case_{i:03d}.png" if i % 2 else "",
        question=f"question {i}" + (" 100% sure?" if i == 7 else ""), label=LABELS[i % 3],
        reasoner_backend=BACKENDS[i % 2], reasoning="long reasoning " * 20,
        neighbours=[Neighbour(case_id=f"c{i}", score=0.5 + i / 1000, rank=1, label=LABELS[(i + 1) % 3])],
        total_seconds=float(i % 10), user_notes="follow up" if i % 10 == 0 else "",
        tags=["teaching"] if i % 4 == 0 else [],
    )


def test_history_pages_sorts_searches_and_filters(any_store: Any) -> None:
    for i in range(N):
        any_store.save_analysis(_analysis(i))
    seen: list[int] = []
    for offset in range(0, N + 10, 10):
        seen += [int(i) for i in any_store.history_page(offset, 10)["id"]]
    assert seen == list(range(N, 0, -1))
    page = any_store.history_page(0, 3)
    assert list(page.columns) == list(HISTORY_COLUMNS)
    rows = any_store.history_frame().to_dict("records")
    expected_top = {r["id"]: json.loads(r["neighbours"])[0] for r in rows}
    for row in any_store.history_page(0, 5, columns=("id", "top_label", "top_score")).to_dict("records"):
        assert row["top_label"] == expected_top[row["id"]]["label"]
        assert row["top_score"] == pytest.approx(expected_top[row["id"]]["score"])
    for sort in ("label", "total_seconds", "input_name"):
        ordered = sorted(sorted(rows, key=lambda r: r["id"]), key=lambda r: r[sort])
        pages = [any_store.history_page(off, 7, sort=sort, descending=False) for off in range(0, N, 7)]
        paged = [int(i) for page in pages for i in page["id"]]
        assert paged == [r["id"] for r in ordered], sort
    assert [int(i) for i in any_store.history_page(0, N, search="100%")["id"]] == [8]  # % is literal
    assert any_store.count_history("_0") == sum("_0" in f"case_{i:03d}.png" for i in range(1, N, 2))
    assert any_store.count_history("TEACHING") == len(range(0, N, 4))
    filtered = any_store.history_page(0, N, labels=["normal", "pneumonia"], backends=["openai"])
    wanted = [i + 1 for i in range(N) if LABELS[i % 3] in ("normal", "pneumonia") and BACKENDS[i % 2] == "openai"]
    assert sorted(int(i) for i in filtered["id"]) == wanted
    assert any_store.count_history(labels=["normal", "pneumonia"], backends=["openai"]) == len(wanted)
    assert any_store.history_values("label") == sorted(LABELS)
    assert any_store.history_values("reasoner_backend", search="case_") == ["openai"]
    with pytest.raises(ValueError, match="Unknown history columns"):
        any_store.history_page(0, 3, columns=("id", "reasoning"))
    with pytest.raises(ValueError, match="Cannot sort"):
        any_store.history_page(0, 3, sort="id; DROP TABLE analyses")
    assert any_store.history_page(N, 10).empty and any_store.count_history() == N


# ----------------------------------------------------------------------------- PostgreSQL only
def test_pg_schema_version_newer_refused_and_older_migrated(
    pg_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medrag.store.pg.schema as pg_schema
    from medrag.store.pg import PgStore

    reset_database(pg_server_url)
    with PgStore(pg_server_url) as store:
        store.save_analysis(Analysis(input_kind="text", question="before"))
    nxt = pg_schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", nxt)
    monkeypatch.setattr(pg_schema, "MIGRATIONS", {nxt: ("ALTER TABLE analyses ADD COLUMN rating INTEGER DEFAULT 0",)})
    with PgStore(pg_server_url) as store, store.cursor() as cur:
        assert cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(nxt),)
        assert cur.execute("SELECT question, rating FROM analyses").fetchall() == [("before", 0)]
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", nxt + 2)
    monkeypatch.setattr(pg_schema, "MIGRATIONS", {nxt + 1: ("CREATE TABLE extra_table (x INTEGER)",)})
    with pytest.raises(StoreError, match="No migration to schema version"):
        PgStore(pg_server_url)
    monkeypatch.undo()
    with pytest.raises(StoreError, match="newer than this MedRAG"):
        PgStore(pg_server_url)  # the database is at nxt now, this MedRAG writes nxt - 1


_WRITER = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    from medrag.analysis import Analysis
    from medrag.records import Case
    from medrag.store.pg import PgStore

    url, name = sys.argv[1], sys.argv[2]
    store = PgStore(url)
    def work(t):
        for j in range(25):
            store.save_analysis(Analysis(input_kind="text", question=f"{name}-{t}-{j}", label=name,
                                         findings={"n": j}, tags=[name]))
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads: t.start()
    # Meanwhile, import overlapping batches: both processes offer cases s000..s039.
    added = 0
    for start in range(0, 40, 10):
        cases = [Case(case_id=f"s{i:03d}", label="normal", dataset="shared", image_path=f"/i/{i}.png",
                      thumb_path=f"/t/{i}.png") for i in range(start, start + 10)]
        ids = [c.case_id for c in cases]
        added += store.add_ingest_batch(cases, [(1, 1)] * 10, [(f"/src/{i}", 1, 1, i) for i in ids],
                                        ("enc", "v1", ids, np.full((10, 4), float(start), dtype=np.float32)))
    for t in threads: t.join()
    store.close()
    print("added", added, flush=True)
    """
)


def test_pg_two_processes_write_at_once_and_lose_nothing(pg_server_url: str) -> None:
    from medrag.store.pg import PgStore

    url = fresh_database(pg_server_url, "medrag_two_writers")
    PgStore(url).close()  # the schema first, as the first replica would
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for name in ("a", "b")]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    added = [int(out.split()[-1]) for out, _ in outputs]
    with PgStore(url) as store:
        assert store.count_analyses() == 200
        frame = store.history_frame()
        expected = {f"{n}-{t}-{j}" for n in "ab" for t in range(4) for j in range(25)}
        assert set(frame["question"]) == expected and frame["id"].is_unique
        one = store.get_analysis(int(frame["id"].iloc[0]))
        assert one is not None and one.tags == [one.label] and set(one.findings) == {"n"}
        assert store.count_history(search="a") >= 100 and store.history_values("label") == ["a", "b"]
        # Each case went in once, and the processes' counts of what they added add up to it.
        assert store.count_cases() == 40 and sum(added) == 40
        ids, vectors = store.load_embeddings("enc", "v1")
        assert len(ids) == 40 and vectors.shape == (40, 4) and len(store.known_sources()) == 40


def test_pg_unreachable_server_is_a_clear_error() -> None:
    pytest.importorskip("psycopg")
    import socket

    from medrag.store.pg import PgStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match=r"Cannot reach the PostgreSQL store at postgresql://u@127\.0\.0\.1") as info:
        PgStore(f"postgresql://u:secret@127.0.0.1:{port}/medrag", connect_timeout=2)
    assert "secret" not in str(info.value)


# ----------------------------------------------------------------------------- choosing the backend
def test_settings_take_only_postgres_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).database_url is None
    assert Settings(data_dir=tmp_path, database_url="  ").database_url is None
    url = "postgres://u:p@db:5432/medrag"
    settings = Settings(data_dir=tmp_path, database_url=url)
    assert settings.database_url == url and "u:p" not in repr(settings)
    for bad in ("mysql://u@h/db", "sqlite:///x.db", "/data/medrag.duckdb"):
        with pytest.raises(ConfigError, match="must be a PostgreSQL URL"):
            Settings(data_dir=tmp_path, database_url=bad)
    monkeypatch.setenv("MEDRAG_DATABASE_URL", "postgresql://h/medrag")
    assert load_settings(tmp_path / "no-secrets.toml").database_url == "postgresql://h/medrag"


def test_open_store_picks_the_backend(tmp_path: Path, pg_server_url: str) -> None:
    import inspect

    import medrag.store.factory as factory
    from medrag.cli import build_parser
    from medrag.store.pg import PgStore

    open_store = inspect.unwrap(factory.open_store)  # the factory itself, also under make test-postgres
    duck = open_store(Settings(data_dir=tmp_path))
    assert isinstance(duck, Store) and Path(duck.path) == tmp_path / "medrag.duckdb"
    reset_database(pg_server_url)
    pg = open_store(Settings(data_dir=tmp_path, database_url=pg_server_url))
    try:
        assert isinstance(pg, PgStore) and pg.data_root == tmp_path.resolve()
    finally:
        pg.close()
    args = build_parser().parse_args(["--database-url", pg_server_url, "history"])
    assert args.database_url == pg_server_url


def test_pg_version_1_database_gains_the_teaching_tables(pg_server_url: str) -> None:
    from medrag.store.pg import PgStore
    from medrag.teaching.model import ItemRef

    url = fresh_database(pg_server_url, "medrag_teaching_migration")
    with PgStore(url) as store, store.transaction() as cur:  # made to look like a database from before them
        for table in ("lesson_sets", "lesson_items", "quiz_answers", "annotations"):
            cur.execute(f"DROP TABLE {table}")
        cur.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        cur.execute("INSERT INTO web_cache VALUES ('k', 'p', now(), '[]')")
    with PgStore(url) as store:
        with store.cursor() as cur:
            assert cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
            assert cur.execute("SELECT count(*) FROM web_cache").fetchone() == (1,)  # nothing lost
        set_id = store.create_lesson_set("Week 1")
        assert store.add_lesson_items(set_id, [ItemRef("case", "c1")]) == 1
        assert [s.name for s in store.lesson_sets()] == ["Week 1"]


def test_the_cli_follows_the_environment_when_an_option_is_not_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`MEDRAG_DATABASE_URL=… medrag ingest …` must reach PostgreSQL (an unset --database-url is not "none")."""
    from medrag.cli import build_parser
    from medrag.cli.common import workbench

    monkeypatch.setenv("MEDRAG_DATABASE_URL", "postgresql://medrag@127.0.0.1:1/medrag")
    monkeypatch.setenv("MEDRAG_IMAGE_ENCODER", "xrv")
    args = build_parser().parse_args(["--data-dir", str(tmp_path), "demo"])
    settings = load_settings(database_url=args.database_url, image_encoder=args.image_encoder)
    assert settings.database_url == "postgresql://medrag@127.0.0.1:1/medrag" and settings.image_encoder == "xrv"
    with pytest.raises(StoreError, match="127.0.0.1:1"):  # it really tries that server, not the DuckDB file
        workbench(args)
    assert not (tmp_path / "medrag.duckdb").exists()


def test_the_suite_mode_decides_which_store_a_data_folder_opens(tmp_path: Path) -> None:
    """MEDRAG_TEST_STORE=postgres (make test-postgres) must really put the workbench's store in PostgreSQL."""
    from medrag.config import Settings
    from medrag.store import Store
    from medrag.store.pg import PgStore
    from medrag.workbench import Workbench
    from pgsuite import PG_SUITE

    workbench = Workbench(Settings(data_dir=tmp_path / "data", web_provider="off"))
    try:
        assert isinstance(workbench.store, PgStore if PG_SUITE else Store)
        assert workbench.settings.db_path.exists() is not PG_SUITE
    finally:
        if isinstance(workbench.store, PgStore):
            workbench.store.close()
