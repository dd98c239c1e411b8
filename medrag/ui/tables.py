"""Tables the pages show: backends in use, web-search state, history rows, key presence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from medrag.config import Settings
from medrag.evaluation.quality import QualityRow
from medrag.ui.safe import escape_markdown
from medrag.workbench import Workbench

_STAGE_NAMES = {
    "image_encoder": "image encoder",
    "text_encoder": "text encoder",
    "reasoner": "reasoner",
    "summariser": "summariser",
}


def backends_frame(workbench: Workbench) -> pd.DataFrame:
    """One row per stage: the backend asked for, the one that runs, its model, and why they differ."""
    rows = []
    for status in workbench.backend_status():
        why = status.note or ("as configured" if status.requested == status.active else "")
        rows.append({
            "stage": _STAGE_NAMES.get(status.stage, status.stage),
            "in use": status.active,
            "requested": status.requested,
            "model": status.model,
            "why": why,
        })
    return pd.DataFrame(rows, columns=["stage", "in use", "requested", "model", "why"])


def web_search_line(settings: Settings) -> str:
    """Whether web search is on, with which provider, or why it is off."""
    from medrag.websearch import build_provider, search_references

    provider = build_provider(settings)
    if provider is None:
        # search_references answers "off: <reason>" without a provider and without any network call.
        return "Web search: " + search_references("", settings)[1]
    return f"Web search: on via {provider.name} (allowlisted sites only: {len(settings.allowlist)} domains)"


def compute_line(settings: Settings) -> str:
    """Where torch models run and which open_clip model the ``openclip`` encoder uses (markdown)."""
    from medrag.devices import select_device
    from medrag.errors import MedRAGError

    try:
        resolved = select_device(settings.torch_device)
        where = f"`{resolved}`" + (" (chosen automatically)" if settings.device == "auto" else "")
    except MedRAGError as exc:
        where = f"`{settings.device}` is not usable here: {escape_markdown(str(exc))}"
    # inside a code span markdown is inert; only a backtick could end it early
    clip = f"`{settings.openclip_model.replace('`', '')}`" if settings.openclip_model else "not set"
    return (f"Torch models run on {where} (MEDRAG_DEVICE: auto, cpu, cuda, cuda:N or mps). "
            f"The `openclip` encoder's model: {clip} (MEDRAG_OPENCLIP_MODEL: local-dir:PATH or hf-hub:ORG/REPO).")


def key_presence(settings: Settings) -> pd.DataFrame:
    """Which secrets are set (never their values)."""
    rows = [
        ("SERPAPI_API_KEY", settings.serpapi_api_key),
        ("TAVILY_API_KEY", settings.tavily_api_key),
        ("OPENAI_API_KEY", settings.openai_api_key),
        ("MEDRAG_OPENAI_BASE_URL", settings.openai_base_url),
    ]
    return pd.DataFrame({"key": [name for name, _ in rows], "set": ["yes" if value else "no" for _, value in rows]})


def _top_match(neighbours_json: Any) -> tuple[str, float | None]:
    try:
        neighbours = json.loads(neighbours_json) if isinstance(neighbours_json, str) else list(neighbours_json or [])
    except (TypeError, ValueError):
        return "", None
    if not neighbours:
        return "", None
    first = neighbours[0]
    return str(first.get("label", "")), float(first.get("score", 0.0))


def short_time(value: object) -> str:
    """A timestamp to the second ("2026-12-01 23:11:03"), without microseconds; "" when there is none."""
    if value is None or value == "":
        return ""
    try:
        return pd.Timestamp(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(value)


def history_table(history: pd.DataFrame) -> pd.DataFrame:
    """Past analyses for display: id, date, input, label, backend, top match, similarity, seconds.

    ``history`` is a :meth:`history_frame` (with the neighbours JSON) or a :meth:`history_page` with the
    derived ``top_label`` / ``top_score`` columns.
    """
    columns = ["id", "date", "input", "label", "backend", "top match", "similarity", "seconds"]
    if history.empty:
        return pd.DataFrame(columns=columns)
    if "neighbours" in history:
        tops = [_top_match(value) for value in history["neighbours"]]
    else:
        tops = [("" if pd.isna(label) else str(label), None if pd.isna(score) else float(score))
                for label, score in zip(history["top_label"], history["top_score"], strict=True)]
    inputs = [
        (name or "") + (f" — {question}" if question else "") if kind == "image" else f"“{question}”"
        for kind, name, question in zip(history["input_kind"], history["input_name"], history["question"], strict=False)
    ]
    return pd.DataFrame({
        "id": history["id"].astype(int),
        "date": pd.to_datetime(history["created_at"]).dt.floor("s"),  # no microseconds on screen
        "input": inputs,
        "label": history["label"].fillna(""),
        "backend": history["reasoner_backend"].fillna(""),
        "top match": [t[0] for t in tops],
        "similarity": [t[1] for t in tops],
        "seconds": history["total_seconds"].astype(float).round(2),
    }, columns=columns)


def neighbour_scores(history: pd.DataFrame) -> pd.DataFrame:
    """Every saved neighbour similarity, tagged "top match" (rank 1) or "all neighbours", and by query kind.

    ``query`` is "image" or "text" (the ``input_kind`` of the analysis): image and text similarities come
    from different encoders and scales, so they are never pooled.
    """
    rows: list[dict[str, Any]] = []
    kinds = history["input_kind"] if "input_kind" in history else ["image"] * len(history)
    for value, kind in zip(history.get("neighbours", []), kinds, strict=False):
        try:
            neighbours = json.loads(value) if isinstance(value, str) else list(value or [])
        except (TypeError, ValueError):
            continue
        query = "text" if str(kind) == "text" else "image"
        for item in neighbours:
            score = float(item.get("score", 0.0))
            rows.append({"score": score, "which": "all neighbours", "query": query})
            if int(item.get("rank", 0)) == 1:
                rows.append({"score": score, "which": "top match", "query": query})
    return pd.DataFrame(rows, columns=["score", "which", "query"])


def quality_frame(rows: Sequence[QualityRow]) -> pd.DataFrame:
    """Measured figures beside their targets: value, 95 % interval, target, met, and what they were measured on."""
    def fmt(value: float | None, target: float | None) -> str:
        if value is None:
            return ""
        text = f"{value:.3f}"
        if target is not None and (float(text) >= target) != (value >= target):
            text = f"{value:.4f}"  # 0.4499 must not read as a met 0.450
        return text

    return pd.DataFrame({
        "model": [r.model for r in rows],
        "measure": [r.measure for r in rows],
        "value": [fmt(r.value, r.target) for r in rows],
        "95% CI": [f"{r.ci95[0]:.2f}–{r.ci95[1]:.2f}" if r.ci95 else "" for r in rows],
        "target": [f"≥ {r.target:.2f}" if r.target is not None else "" for r in rows],
        "met": ["" if r.met is None else ("yes" if r.met else "no") for r in rows],
        "measured on": [r.data for r in rows],
    })

