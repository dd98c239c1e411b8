"""Quiz results for the educator: scores per learner and quiz, every answer, both as CSV.

Read from the stored answers (:meth:`medrag.store.Store.quiz_answers_frame`); the CSV has formula cells
neutralised (a learner may be called ``=HYPERLINK(…)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from medrag.teaching.items import resolve_refs
from medrag.teaching.model import ItemRef

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore


def results_table(answers: pd.DataFrame) -> pd.DataFrame:
    """Per quiz, learner and mode: sessions, questions answered, right, score (%), "where is it?" right."""
    columns = ["quiz", "learner", "mode", "sessions", "answered", "right", "score %", "located", "last answer"]
    if answers.empty:
        return pd.DataFrame(columns=columns)
    frame = answers.assign(
        right=answers["correct"].astype(bool).astype(int),
        is_locate=(answers["kind"] == "locate").astype(int),
        located=((answers["kind"] == "locate") & answers["correct"].astype(bool)).astype(int),
    )
    grouped = frame.groupby(["quiz_name", "learner", "mode"], sort=True)
    out = grouped.agg(
        sessions=("session_id", "nunique"),
        answered=("answer_id", "count"),
        right=("right", "sum"),
        asked_locate=("is_locate", "sum"),
        located=("located", "sum"),
        last=("answered_at", "max"),
    ).reset_index()
    out["score %"] = (100.0 * out["right"] / out["answered"]).round(1)
    out["located"] = [
        f"{int(r)} / {int(a)}" if a else "" for r, a in zip(out["located"], out["asked_locate"], strict=True)
    ]
    out["last answer"] = pd.to_datetime(out["last"]).dt.strftime("%Y-%m-%d %H:%M")
    out = out.rename(columns={"quiz_name": "quiz"})
    return out[columns]


def case_titles(store: AnyStore, answers: pd.DataFrame) -> dict[str, str]:
    """``"kind:id"`` → the readable name of each case or analysis the answers are about."""
    if answers.empty:
        return {}
    refs = {ItemRef(k, str(i)) for k, i in zip(answers["ref_kind"], answers["ref_id"], strict=True)}
    return {ref.key: view.title for ref, view in resolve_refs(store, refs).items()}


def answers_table(answers: pd.DataFrame, titles: dict[str, str] | None = None) -> pd.DataFrame:
    """Every stored answer as a readable table (one row an answer, oldest first), with case names when given."""
    columns = [
        "answered",
        "quiz",
        "learner",
        "mode",
        "question",
        "kind",
        "case",
        "case name",
        "truth",
        "answer",
        "right",
    ]
    if answers.empty:
        return pd.DataFrame(columns=columns)
    keys = answers["ref_kind"] + ":" + answers["ref_id"].astype(str)
    return pd.DataFrame(
        {
            "answered": pd.to_datetime(answers["answered_at"]).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "quiz": answers["quiz_name"],
            "learner": answers["learner"],
            "mode": answers["mode"],
            "question": answers["question_no"].astype(int),
            "kind": answers["kind"],
            "case": keys,
            "case name": keys.map(lambda k: (titles or {}).get(k, "")),
            "truth": answers["truth"],
            "answer": answers["answer"],
            "right": answers["correct"].astype(bool),
        }
    )[columns]


def results_csv(table: pd.DataFrame) -> bytes:
    """A results (or answers) table as UTF-8 CSV, formula cells neutralised (a name may start with ``=``)."""
    from medrag.export import neutralise_frame

    return neutralise_frame(table).to_csv(index=False).encode("utf-8")


__all__ = ["answers_table", "case_titles", "results_csv", "results_table"]
