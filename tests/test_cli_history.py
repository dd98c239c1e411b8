"""The history paged in SQL (issue #12 item 15, store and CLI side): ``Store.history_page`` /
``count_history`` / ``history_values`` return the right rows for every page, sort, search and filter, read
only light columns, and ``medrag history`` lists with them (timings are in bench/bench_history.py)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from medrag.analysis import Analysis
from medrag.records import Neighbour
from medrag.store import Store
from medrag.store.analyses import HISTORY_COLUMNS
from pgsuite import folder_store

N = 53
LABELS = ("normal", "cardiomegaly", "pneumonia")
BACKENDS = ("evidence", "openai")


def _analysis(i: int) -> Analysis:
    return Analysis(
        input_kind="image" if i % 2 else "text",
        input_name=f"case_{i:03d}.png" if i % 2 else "",
        question=f"question {i}" + (" 100% sure?" if i == 7 else ""),
        label=LABELS[i % 3],
        reasoner_backend=BACKENDS[i % 2],
        reasoning="long reasoning " * 50,
        neighbours=[Neighbour(case_id=f"c{i}", score=0.5 + i / 1000, rank=1, label=LABELS[(i + 1) % 3])],
        total_seconds=float(i % 10),
        user_notes="follow up" if i % 10 == 0 else "",
        tags=["teaching"] if i % 4 == 0 else [],
    )


@pytest.fixture(scope="module")
def store() -> Store:
    """A history of :data:`N` analyses with ids 1..N (analysis i+1 is ``_analysis(i)``)."""
    memory = Store(":memory:")
    for i in range(N):
        memory.save_analysis(_analysis(i))
    return memory


def _all(store: Store) -> list[dict]:
    """Every row, decoded, the slow way (what paging must agree with)."""
    frame = store.history_frame()
    return frame.to_dict("records")


def test_pages_cover_every_row_once_newest_first(store: Store) -> None:
    seen: list[int] = []
    for offset in range(0, N + 10, 10):
        page = store.history_page(offset, 10)
        assert len(page) == max(0, min(10, N - offset))
        seen += [int(i) for i in page["id"]]
    assert seen == list(range(N, 0, -1))
    assert list(store.history_page(0, 5, descending=False)["id"]) == [1, 2, 3, 4, 5]
    assert store.history_page(N, 10).empty and store.history_page(0, 0).empty


def test_a_page_reads_light_columns_only(store: Store) -> None:
    page = store.history_page(0, 3)
    assert list(page.columns) == list(HISTORY_COLUMNS)
    assert "reasoning" not in page.columns and "neighbours" not in page.columns
    top = store.history_page(0, 3, columns=("id", "top_label", "top_score"))
    expected = {row["id"]: json.loads(row["neighbours"])[0] for row in _all(store)}
    for row in top.to_dict("records"):
        assert row["top_label"] == expected[row["id"]]["label"]
        assert row["top_score"] == pytest.approx(expected[row["id"]]["score"])
    with pytest.raises(ValueError, match="Unknown history columns"):
        store.history_page(0, 3, columns=("id", "reasoning"))
    with pytest.raises(ValueError, match="Cannot sort"):
        store.history_page(0, 3, sort="id; DROP TABLE analyses")


@pytest.mark.parametrize("sort", ["label", "total_seconds", "input_name", "created_at"])
@pytest.mark.parametrize("descending", [True, False])
def test_sorted_pages_match_a_full_sort_with_ties_broken_by_id(store: Store, sort: str, descending: bool) -> None:
    rows = _all(store)
    rows.sort(key=lambda r: r["id"], reverse=descending)
    rows.sort(key=lambda r: r[sort], reverse=descending)  # stable: ties stay in id order
    expected = [r["id"] for r in rows]
    paged: list[int] = []
    for offset in range(0, N, 7):
        paged += [int(i) for i in store.history_page(offset, 7, sort=sort, descending=descending)["id"]]
    assert paged == expected


@pytest.mark.parametrize("search", ["pneumonia", "PNEUMONIA", "case_01", "teaching", "follow", "100%", "_0", "nothing"])
def test_search_matches_the_substring_case_insensitively_and_literally(store: Store, search: str) -> None:
    needle = search.lower()
    expected = [
        r["id"] for r in sorted(_all(store), key=lambda r: -r["id"])
        if any(needle in str(r[c] or "").lower() for c in ("label", "input_name", "question", "notes", "tags"))
    ]
    assert store.count_history(search) == len(expected)
    assert [int(i) for i in store.history_page(0, N, search=search)["id"]] == expected
    if search == "100%":
        assert expected == [8]  # % is a literal, not a wildcard
    if search == "_0":
        assert all("_0" in str(r) for r in store.history_page(0, N, search=search)["input_name"])


def test_label_and_backend_filters_and_their_values(store: Store) -> None:
    page = store.history_page(0, N, labels=["normal", "pneumonia"], backends=["openai"])
    expected = [i + 1 for i in range(N) if LABELS[i % 3] in ("normal", "pneumonia") and BACKENDS[i % 2] == "openai"]
    assert sorted(int(i) for i in page["id"]) == expected
    assert store.count_history(labels=["normal", "pneumonia"], backends=["openai"]) == len(expected)
    assert store.history_values("label") == sorted(LABELS)
    assert store.history_values("reasoner_backend", search="case_") == ["openai"]  # image rows are odd i
    assert store.count_history() == N


# ----------------------------------------------------------------------------- medrag history


def cli(*argv: str) -> tuple[int, str, str]:
    from medrag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("history-cli")
    disk = folder_store(data)
    with disk.session():
        for i in range(N):
            disk.save_analysis(_analysis(i))
    return data


def _listed(out: str) -> list[int]:
    return [int(line.split()[0][1:]) for line in out.splitlines() if line.startswith("#")]


def test_history_lists_a_page_and_says_how_to_get_more(data_dir: Path) -> None:
    code, out, _ = cli("--data-dir", str(data_dir), "history")
    assert code == 0 and _listed(out) == list(range(N, N - 20, -1))
    assert f"1-20 of {N}" in out and "--offset 20" in out
    code, out, _ = cli("--data-dir", str(data_dir), "history", "--offset", "50", "--limit", "10")
    assert code == 0 and _listed(out) == [3, 2, 1]
    code, out, _ = cli("--data-dir", str(data_dir), "history", "--search", "case_00", "--limit", "100")
    assert code == 0 and _listed(out) == [10, 8, 6, 4, 2]  # analysis i+1 is case_{i}
    code, out, _ = cli("--data-dir", str(data_dir), "history", "--search", "no such text")
    assert code == 0 and _listed(out) == [] and "No analyses match" in out
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        cli("--data-dir", str(data_dir), "history", "--limit", "0")
    assert usage.value.code == 2
