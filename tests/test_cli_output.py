"""Terminal escapes never reach the terminal (issue #12 item 10): everything the CLI prints from data goes
through one printer (``medrag.cli.output``) that strips escape sequences, controls and bidi overrides and
shows a line break inside data as a visible ``\\n``: file names and CSV cells in ``ingest``'s skipped/note
lines, the ``[input failed]`` line of ``analyze``, labels in ``eval retrieval``, and server error text from
SerpAPI, Tavily and an OpenAI-compatible server, which is also stored clean in ``analyses.errors``."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakeservers import FakeServer, Reply
from leakscan import portable_sql
from medrag.cli import output
from medrag.textsafe import one_line, printable, strip_escapes
from pgsuite import folder_store

#: A line that data would forge if its line break reached the terminal.
FORGED = "Saved to history as analysis #999."
#: Clear screen, retitle the window (OSC … BEL), an 8-bit CSI, a bidi override, CR+LF, then a forged line.
HOSTILE = f"\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\r\n{FORGED}"
#: What must never be printed: C0 controls but tab/LF/CR (tqdm's progress bar uses CR), DEL, C1, bidi.
_RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


def assert_clean(text: str) -> None:
    """No escape or control character in ``text``, no residue of one, and no forged line."""
    found = _RAW.search(text)
    assert found is None, f"raw {found.group()!r} in {text!r}"
    assert "[2J" not in text and "]0;" not in text and "31m" not in text, text
    forged = [line for line in re.split("[\r\n]", text) if line.strip().startswith(FORGED)]
    assert forged == [], f"forged output line(s) {forged}"


def cli(*argv: str) -> tuple[int, str, str]:
    """``medrag.cli.main(argv)`` in-process: (exit code, stdout, stderr). Any exception fails the test."""
    from medrag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- the text functions, the printer


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[2Jb", "ab"),
        ("a\x1b[38;5;196mred\x1b[0m", "ared"),
        ("a\x1b]0;title\x07b", "ab"),
        ("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
        ("a\x1bP1;2|secret\x1b\\b", "ab"),
        ("a\x9b2Jb", "ab"),
        ("a\x9d0;t\x9cb", "ab"),
        ("a\x1bcb", "ab"),
        ("a\x1b(Bb", "ab"),
        ("a\x1b]0;unterminated", "a0;unterminated"),  # only the introducer goes; the rest is plain text
        ("a\x1b[12", "a12"),
    ],
)
def test_escape_sequences_are_removed_whole(raw: str, shown: str) -> None:
    assert printable(raw) == shown and one_line(raw) == shown
    assert "\x1b" not in strip_escapes(raw)


def test_one_line_turns_every_line_break_into_one_marker() -> None:
    assert one_line("a\r\nb\nc\rd\u2028e\x85f\x0bg") == "a b c d e f g"
    assert one_line("a\nb", newline="\\n") == "a\\nb"
    assert one_line("tab\there") == "tab here"
    assert one_line(HOSTILE) == f"evil {FORGED}"


def test_the_printer_prints_data_as_one_clean_line(capsys: pytest.CaptureFixture[str]) -> None:
    output.echo(f"skipped {HOSTILE}.png: not an image")
    output.echo(HOSTILE, err=True)
    output.lines(f"header\nrow {output.clean(HOSTILE)}")  # a layout of the CLI's own, data cleaned first
    output.block(f"para one\x1b[2J\n{HOSTILE}", indent="  ")
    output.stream("token\x1b]0;x\x07 two\r")
    captured = capsys.readouterr()
    assert_clean(captured.out.replace("  " + FORGED, ""))  # block keeps the data's own lines (indented)
    assert_clean(captured.err)
    lines = captured.out.splitlines()
    assert lines[0] == f"skipped evil\\n{FORGED}.png: not an image"
    assert captured.err == f"evil\\n{FORGED}\n"
    assert lines[1:3] == ["header", f"row evil\\n{FORGED}"]
    assert lines[3:6] == ["  para one", "  evil", "  " + FORGED]
    assert lines[6] == "token two"


def test_nothing_in_medrag_cli_prints_but_the_printer() -> None:
    package = Path(__file__).resolve().parents[1] / "medrag" / "cli"
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(package.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bprint\(|sys\.std(out|err)\.write", line) and path.name != "output.py"
    ]
    assert offenders == []


# ----------------------------------------------------------------------------- ingest, analyze, eval


def _noise_png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((64, 64)) * 255).astype("uint8")).save(path)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-case phantom library (data folder) for analyze / eval."""
    data = tmp_path_factory.mktemp("cli-output")
    assert cli("--data-dir", str(data), "demo", "--n", "24")[0] == 0
    return data


def test_ingest_skipped_and_note_lines_show_file_names_and_csv_cells_clean(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / f"{HOSTILE}.png").write_bytes(b"plain text, not an image")
    for i in range(3):
        _noise_png(images / f"ok{i}.png", i)
    labels = tmp_path / f"labels{HOSTILE}.csv"
    labels.write_text(
        "image,label\n"
        "ok0.png,normal\n"
        "ok0.png,normal\n"  # a duplicate row: a note naming the CSV
        f'"missing{HOSTILE}.png",normal\n'  # a cell naming a missing image: a skipped line
        f'ok1.png,"{HOSTILE}"\n'
    )
    code, out, err = cli("--data-dir", str(tmp_path / "data"), "ingest", str(images), "--labels", str(labels))
    assert code == 0, err
    assert "skipped" in out and "note:" in out
    assert_clean(out)
    assert_clean(err)


def test_analyze_input_failed_line_is_clean(library: Path, tmp_path: Path) -> None:
    bad = tmp_path / f"{HOSTILE}.png"
    bad.write_bytes(b"plain text, not an image")
    code, out, err = cli("--data-dir", str(library), "analyze", str(bad), "--no-web")
    assert code == 2
    assert "[input failed]" in err and "evil" in err
    assert_clean(out)
    assert_clean(err)


def test_eval_retrieval_prints_labels_clean_and_one_table_row_each(library: Path) -> None:
    store = folder_store(library)
    with store.transaction() as cur:
        original = dict(cur.execute("SELECT case_id, label FROM cases").fetchall())
        victims = sorted(original)[: len(original) // 2]
        marks = ", ".join("?" * len(victims))
        cur.execute(portable_sql(store, f"UPDATE cases SET label = ? WHERE case_id IN ({marks})"), [HOSTILE, *victims])
    try:
        code, out, err = cli("--data-dir", str(library), "eval", "retrieval", "--encoder", "classic")
    finally:
        with store.transaction() as cur:
            cur.executemany(portable_sql(store, "UPDATE cases SET label = ? WHERE case_id = ?"),
                            [[v, k] for k, v in original.items()])
    assert code == 0, err
    assert_clean(out)
    assert_clean(err)
    labels = {HOSTILE, *(original[c] for c in original if c not in victims)}
    rows = [line for line in out.splitlines() if line.startswith("label=")]
    assert len(rows) == len(labels), rows  # no row forged by a line break inside a label
    assert any(f"label=evil {FORGED}"[:24] in row for row in rows)


# ----------------------------------------------------------------------------- server error text


SERP_KEY = "serp-SECRET-key-1234"
TAVILY_KEY = "tvly-SECRET-key-5678"
OPENAI_KEY = "sk-SECRET-openai-9012"
QUESTION = "Is the heart enlarged on this chest X-ray?"
#: The fake servers outlive a slow first analysis (the text encoder loads) on a busy machine.
SERVER_LIFETIME_S = 600.0


def _serp_routes(reply: Reply) -> dict:
    return {"GET /search": lambda req: reply, "GET /search.json": lambda req: reply}


def _stored_meta(library: Path) -> str:
    store = folder_store(library)
    with store.cursor() as cur:
        return str(cur.execute("SELECT meta FROM analyses ORDER BY id DESC LIMIT 1").fetchall()[0][0])


def _stored_errors(library: Path) -> str:
    store = folder_store(library)
    with store.cursor() as cur:
        return str(cur.execute("SELECT errors FROM analyses ORDER BY id DESC LIMIT 1").fetchall()[0][0])


@pytest.mark.parametrize(
    "reply",
    [Reply(json={"error": HOSTILE}), Reply(status=500, json={"error": HOSTILE})],
    ids=["error field", "HTTP 500"],
)
def test_serpapi_error_text_is_printed_and_stored_clean(
    library: Path, monkeypatch: pytest.MonkeyPatch, reply: Reply
) -> None:
    with FakeServer(_serp_routes(reply), lifetime_s=SERVER_LIFETIME_S) as server:
        monkeypatch.setenv("MEDRAG_WEB", "serpapi")
        monkeypatch.setenv("SERPAPI_API_KEY", SERP_KEY)
        monkeypatch.setenv("MEDRAG_SERPAPI_BASE_URL", server.url)
        code, out, err = cli("--data-dir", str(library), "web", "cardiomegaly")
        assert code == 2 and err.startswith("error: SerpAPI")
        assert_clean(out)
        assert_clean(err)
        code, out, err = cli("--data-dir", str(library), "analyze", "--text", QUESTION)
        assert len(server.requests) >= 2  # the error text really came from the server
    assert code == 0 and "[web failed]" in err, err
    assert_clean(out)
    assert_clean(err)
    stored = _stored_errors(library)
    assert "web" in stored and "\\u001b" not in stored and "\\u009b" not in stored and "\\u202e" not in stored
    assert "\\n" not in stored.replace('\\"', "") and "\\r" not in stored  # one line, in JSON terms
    assert SERP_KEY not in out + err + stored


def test_tavily_error_text_is_printed_clean(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reply = Reply(status=400, json={"detail": {"error": HOSTILE}})
    with FakeServer({"POST /search": lambda req: reply}, lifetime_s=SERVER_LIFETIME_S) as server:
        monkeypatch.setenv("MEDRAG_WEB", "tavily")
        monkeypatch.setenv("TAVILY_API_KEY", TAVILY_KEY)
        monkeypatch.setenv("MEDRAG_TAVILY_BASE_URL", server.url)
        code, out, err = cli("--data-dir", str(library), "web", "cardiomegaly")
        assert len(server.requests) >= 1
    assert code == 2 and err.startswith("error: Tavily"), err
    assert_clean(out)
    assert_clean(err)


def test_openai_compatible_server_error_is_printed_and_stored_clean(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = Reply(status=500, json={"error": {"message": HOSTILE}})
    with FakeServer({"POST /v1/chat/completions": lambda req: reply}, lifetime_s=SERVER_LIFETIME_S) as server:
        monkeypatch.setenv("MEDRAG_OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        argv = ("--data-dir", str(library), "--reasoner", "openai", "analyze", "--text", QUESTION, "--no-web")
        code, out, err = cli(*argv)
        assert len(server.requests) >= 1
    # The server failed before its first token: the offline reasoner wrote the reading, and a note says why.
    assert "note:" in err and "HTTP 500" in err and "offline evidence reasoner" in err, (code, out, err)
    assert "[reasoner: evidence" in out
    assert_clean(out)
    assert_clean(err)
    stored = _stored_meta(library)
    assert "HTTP 500" in stored and "\\u001b" not in stored and "\\u009b" not in stored and "\\u202e" not in stored
    assert OPENAI_KEY not in out + err + stored
