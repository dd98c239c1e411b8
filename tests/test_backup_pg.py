"""``medrag backup`` / ``restore`` on a PostgreSQL store: a pg_dump of one counted snapshot, a checked round trip,
the database before a restore kept, and refusals that change nothing (tests/pgserver.py's throwaway server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrag.analysis import Analysis
from medrag.backup import manifest_path
from medrag.cli import main
from medrag.config import Settings
from medrag.errors import BackupError
from medrag.store.pg import PgStore
from medrag.teaching.model import ItemRef
from medrag.workbench import Workbench
from pgserver import fresh_database

N = 12


def _rows(store: PgStore) -> tuple[int, int, list[str]]:
    return store.count_cases(), store.count_analyses(), [s.name for s in store.lesson_sets()]


@pytest.fixture()
def library(pg_server_url: str, tmp_path: Path) -> tuple[Settings, PgStore]:
    settings = Settings(data_dir=tmp_path / "data", web_provider="off",
                        database_url=fresh_database(pg_server_url, "medrag_backup"))
    workbench = Workbench(settings)
    workbench.build_demo(n=N, seed=0)
    store = workbench.store
    assert isinstance(store, PgStore)
    for n in range(5):
        store.save_analysis(Analysis(input_kind="text", question=f"kept question {n}", label="normal"))
    set_id = store.create_lesson_set("Week 1")
    store.add_lesson_items(set_id, [ItemRef("case", sorted(store.case_ids_where())[0])])
    return settings, store


def _cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, capsys: pytest.CaptureFixture[str],
         *args: str) -> tuple[int, str]:
    monkeypatch.setenv("MEDRAG_DATABASE_URL", str(settings.database_url))
    capsys.readouterr()
    code = main(["--data-dir", str(settings.data_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_backup_then_restore_gives_back_the_rows_and_keeps_what_it_replaced(
    library: tuple[Settings, PgStore], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    settings, store = library
    before = _rows(store)
    target = tmp_path / "class.pgdump"
    code, out = _cli(monkeypatch, settings, capsys, "backup", str(target))
    assert code == 0, out
    manifest = json.loads(manifest_path(target).read_text())
    assert manifest["source"].startswith("postgresql://")
    assert manifest["rows"]["cases"] == N and manifest["rows"]["analyses"] == 5 and manifest["rows"]["lesson_sets"] == 1

    # Changes after the backup: one more analysis, the set deleted.
    store.save_analysis(Analysis(input_kind="text", question="after the backup"))
    store.delete_lesson_set(store.lesson_sets()[0].set_id)
    changed = _rows(store)
    assert changed != before

    code, out = _cli(monkeypatch, settings, capsys, "restore", str(target))
    assert code == 0, out
    assert _rows(store) == before
    aside = next((settings.data_dir / "backups").glob("before-restore-*.pgdump"))
    assert json.loads(manifest_path(aside).read_text())["rows"]["analyses"] == 6  # what it replaced, kept
    code, out = _cli(monkeypatch, settings, capsys, "restore", str(aside))  # and that one restores too
    assert code == 0, out
    assert _rows(store) == changed


def test_a_torn_or_foreign_backup_is_refused_and_nothing_changes(
    library: tuple[Settings, PgStore], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    settings, store = library
    target = tmp_path / "class.pgdump"
    assert _cli(monkeypatch, settings, capsys, "backup", str(target))[0] == 0
    before = _rows(store)
    code, out = _cli(monkeypatch, settings, capsys, "backup", str(target))
    assert code != 0 and "already exists" in out

    torn = tmp_path / "torn.pgdump"
    torn.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    manifest_path(torn).write_text(manifest_path(target).read_text())
    code, out = _cli(monkeypatch, settings, capsys, "restore", str(torn))
    assert code != 0 and "torn or changed" in out

    duck = tmp_path / "medrag.duckdb"
    duck.write_bytes(b"not used")
    manifest_path(duck).write_text(json.dumps({**json.loads(manifest_path(target).read_text()),
                                               "source": "/srv/data/medrag.duckdb"}))
    code, out = _cli(monkeypatch, settings, capsys, "restore", str(duck))
    assert code != 0 and "backup of a DuckDB file" in out
    code, out = _cli(monkeypatch, settings, capsys, "repair")
    assert code != 0 and "recovers by itself" in out and "medrag restore" in out
    assert _rows(store) == before
    assert not (settings.data_dir / "backups").exists()  # no refused restore got as far as the safety dump


def test_backup_of_a_database_without_a_medrag_store_says_so(pg_server_url: str, tmp_path: Path) -> None:
    from medrag.backup_pg import backup_pg

    settings = Settings(data_dir=tmp_path, database_url=fresh_database(pg_server_url, "medrag_empty"))
    with pytest.raises(BackupError, match="holds no MedRAG store"):
        backup_pg(settings, tmp_path / "x.pgdump")
    assert not (tmp_path / "x.pgdump").exists()
