"""Retrieval quality end to end: the phantom library and the real X-rays (ingest → index → search)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medrag.config import Settings
from medrag.engine.vectors import case_pixels
from medrag.evaluation.retrieval import leave_one_patient_out
from medrag.workbench import Workbench


def test_phantom_neighbours_share_the_finding_far_above_chance(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    frame = demo_workbench.store.cases_frame()
    labels = dict(zip(frame["case_id"], frame["label"], strict=True))
    counts = Counter(labels.values())
    hits = total = 0
    for case_id, row in zip(frame["case_id"], frame.itertuples(), strict=True):
        neighbours = demo_workbench.search_image(case_pixels(row.image_path, row.thumb_path), 5, exclude={case_id})
        hits += sum(n.label == labels[case_id] for n in neighbours)
        total += len(neighbours)
    precision = hits / total
    chance = sum((c / len(labels)) * ((c - 1) / (len(labels) - 1)) for c in counts.values())
    assert precision > 2 * chance, (precision, chance)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_library_beats_majority_class(real_data: Path, tmp_path: Path) -> None:
    workbench = Workbench(Settings(data_dir=tmp_path / "data", web_provider="off"))
    report = workbench.ingest(real_data, labels_csv=real_data / "labels.csv")
    assert report.added >= 1380 and not report.errors
    ids, vectors = workbench.store.load_embeddings(workbench.image_encoder.name, workbench.image_encoder.version)
    frame = workbench.store.cases_frame(dataset="nih").set_index("case_id")
    keep = [i for i, cid in enumerate(ids) if cid in frame.index and frame.loc[cid, "label"] in {"normal", "pneumonia"}]
    subset = frame.loc[[ids[i] for i in keep]]
    result = leave_one_patient_out(vectors[keep], list(subset["label"]), list(subset["patient_id"]))
    majority = subset["label"].value_counts(normalize=True).max()
    p10 = result.to_dict()["overall"]["p_at_10"]
    assert p10 > majority, (p10, majority)
    # Search by text returns cases whose label matches the question.
    hits = workbench.search_text("pneumonia", 10)
    assert sum(h.label == "pneumonia" for h in hits) >= 5
    assert np.isfinite([h.score for h in hits]).all()
