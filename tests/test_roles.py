"""Roles for a class: the educator's hashed password, the learner's limits (each forbidden action), sign-in."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from medrag.config import Settings, load_settings
from medrag.errors import ConfigError, PermissionDeniedError
from medrag.roles import EDUCATOR_ONLY, check_hash, hash_password, require, verify_password
from medrag.teaching.model import Annotation, ItemRef
from pgsuite import folder_store

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
PASSWORD = "radiology-class-7"
#: A fast hash for the tests (the real default is 600,000 iterations).
HASH = hash_password(PASSWORD, iterations=20_000, salt=b"0123456789abcdef")


def test_a_password_is_kept_only_as_a_salted_hash_and_verified() -> None:
    stored = hash_password(PASSWORD, iterations=20_000)
    assert PASSWORD not in stored and stored.startswith("pbkdf2_sha256$20000$")
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "x", stored)
    assert hash_password(PASSWORD, iterations=20_000) != stored  # a new salt each time
    with pytest.raises(ConfigError, match="at least 8 characters"):
        hash_password("short")
    for junk in ("", PASSWORD, "pbkdf2_sha256$10$abc$def", "md5$1$2$3", "pbkdf2_sha256$20000$!!$??"):
        with pytest.raises(ConfigError, match="medrag auth hash-password"):
            check_hash(junk)


def test_settings_read_the_hash_and_refuse_a_plain_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDRAG_EDUCATOR_PASSWORD_HASH", HASH)
    settings = load_settings(secrets_path=tmp_path / "none.toml", data_dir=tmp_path)
    assert settings.educator_password_hash == HASH and HASH not in repr(settings)
    monkeypatch.setenv("MEDRAG_EDUCATOR_PASSWORD_HASH", PASSWORD)
    with pytest.raises(ConfigError, match="never the password itself"):
        load_settings(secrets_path=tmp_path / "none.toml", data_dir=tmp_path)
    assert Settings().educator_password_hash is None  # a workstation: login-free


def test_cli_hashes_a_password_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from medrag.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["auth", "hash-password"]) == 0
    printed = capsys.readouterr()
    line = next(w for w in printed.out.split() if w.startswith("pbkdf2_sha256$"))
    assert verify_password(PASSWORD, line) and PASSWORD not in printed.out + printed.err


def test_the_role_check_names_the_action_and_the_way_in() -> None:
    require("educator", "delete an analysis")
    with pytest.raises(PermissionDeniedError, match="Only the educator can delete an analysis.*sign"):
        require("learner", "delete an analysis")


def _forbidden(workbench: Any) -> dict[str, Callable[[], object]]:
    from medrag.ui import annotate, data, lessons, quiz

    ref = ItemRef("case", "c1")
    return {
        "delete an analysis": lambda: data.delete_analysis(workbench, 1),
        "edit an analysis' notes and tags": lambda: data.update_analysis_notes(workbench, 1, "x", ["y"]),
        "create a lesson set": lambda: lessons.create_set(workbench, "Week 9"),
        "rename a lesson set": lambda: lessons.rename_set(workbench, 1, "Other", ""),
        "delete a lesson set": lambda: lessons.delete_set(workbench, 1),
        "change a lesson set's items": lambda: lessons.add_items(workbench, "Week 1", [ref]),
        "import a lesson set": lambda: lessons.import_bundle(workbench, b"PK"),
        "draw or delete annotations": lambda: annotate.save_annotation(workbench, Annotation(ref, "box", 1, 1, 5, 5)),
        "import into the library": lambda: data.import_folder(workbench, Path("/nonexistent")),
        "rebuild the index": lambda: data.reindex(workbench),
        "see the quiz results": lambda: quiz.answers_frame(workbench),
    }


def test_every_forbidden_action_is_refused_to_a_learner_and_changes_nothing(
    demo_workbench: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medrag.analysis import Analysis
    from medrag.ui import roles

    store = demo_workbench.store
    kept = store.save_analysis(Analysis(input_kind="text", question="a learner must not delete this"))
    set_id = store.create_lesson_set("Week 1")
    store.add_lesson_items(set_id, [ItemRef("case", "c1")])
    before = (store.count_analyses(), store.count_cases(), [(s.name, len(s.items)) for s in store.lesson_sets()])
    monkeypatch.setattr(roles, "current_role", lambda: "learner")
    actions = _forbidden(demo_workbench)
    assert set(actions) == set(EDUCATOR_ONLY)  # every action the roles name is tried
    for action, attempt in actions.items():
        with pytest.raises(PermissionDeniedError, match=f"Only the educator can {action}"):
            attempt()
    after = (store.count_analyses(), store.count_cases(), [(s.name, len(s.items)) for s in store.lesson_sets()])
    assert after == before and store.get_analysis(kept) is not None
    monkeypatch.setattr(roles, "current_role", lambda: "educator")
    assert demo_workbench.store.get_lesson_set(set_id) is not None
    from medrag.ui import lessons

    lessons.rename_set(demo_workbench, set_id, "Week 1 (educator)", "")  # the educator may
    assert store.get_lesson_set(set_id).name == "Week 1 (educator)"  # type: ignore[union-attr]
    store.delete_lesson_set(set_id)


@pytest.fixture()
def class_app(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.getbasetemp() / "medrag-class-data"
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(folder))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", "24")
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("MEDRAG_EDUCATOR_PASSWORD_HASH", HASH)
    return folder


@pytest.mark.slow
def test_a_learner_cannot_create_or_delete_and_the_educator_signs_in(class_app: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/6_Lessons.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("learner" in c.value for c in at.sidebar.caption)
    assert not [b for b in at.button if b.key == "lesson_create"]  # no "New lesson set" for a learner
    assert any("the educator makes them" in i.value for i in at.info)

    at.sidebar.text_input(key="roles_password").input("not the password")
    at.sidebar.button(key="roles_sign_in").click().run()
    assert any("not the educator's password" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="roles_password").input(PASSWORD)
    at.sidebar.button(key="roles_sign_in").click().run()
    assert not at.exception
    assert any("You are the **educator**" in c.value or "You are the educator" in c.value for c in at.sidebar.caption)
    at.text_input(key="lesson_new_name").input("Week 2")
    at.button(key="lesson_create").click().run()
    assert not at.exception, [e.value for e in at.exception]

    assert [s.name for s in folder_store(class_app).lesson_sets()] == ["Week 2"]

    learner = AppTest.from_file(APP, default_timeout=240)  # another browser session: a learner again
    learner.switch_page("pages/7_Quiz.py").run()
    learner.session_state["quiz_tabs"] = "Results"
    learner.run()
    assert not learner.exception
    assert any("for the educator" in i.value for i in learner.info)
    assert not learner.dataframe  # no learner's answers shown


@pytest.mark.slow
def test_a_learner_sees_an_analysis_in_history_but_no_edit_or_delete(class_app: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/3_History.py").run()  # first run builds the demo library
    from medrag.analysis import Analysis

    analysis_id = folder_store(class_app).save_analysis(Analysis(input_kind="text", question="effusion?"))
    at.session_state["history_open_id"] = analysis_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(h.value == f"Analysis #{analysis_id}" for h in at.subheader)
    assert not [b for b in at.button if b.key == "history_delete"]
    assert not [f for f in at.get("form") if "history_notes" in str(getattr(f, "form_id", ""))]
    assert any("for the educator" in c.value for c in at.caption)


def test_settings_read_the_educators_addresses_for_single_sign_on(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("MEDRAG_EDUCATOR_EMAILS", " Teacher@School.example, second@school.example ,,")
    settings = load_settings(secrets_path=tmp_path / "none.toml", data_dir=tmp_path)
    assert settings.educator_emails == ("teacher@school.example", "second@school.example")
    monkeypatch.setenv("MEDRAG_EDUCATOR_EMAILS", "teacher@school.example, Ms Teacher")
    with pytest.raises(ConfigError, match="'ms teacher', which is not an e-mail address"):
        load_settings(secrets_path=tmp_path / "none.toml", data_dir=tmp_path)
    assert Settings().educator_emails == ()
