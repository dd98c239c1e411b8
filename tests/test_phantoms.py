"""Synthetic phantoms: determinism, finding-specific pixels, reports and the demo library."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from medrag.errors import InputError
from medrag.imaging import from_array, load_image, measure
from medrag.phantoms import (
    CSV_COLUMNS,
    FINDING_NAMES,
    build_demo_library,
    demo_mix,
    finding_centres,
    generate_phantom,
    label_for,
    phantom_report,
    plan_findings,
)
from medrag.records import FINDINGS

SEEDS = range(8)
NORMAL: frozenset[str] = frozenset()


def _disc(img: np.ndarray, centre: tuple[int, int], radius: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return img[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2]


def _pair(finding: str, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    found = frozenset({finding})
    return generate_phantom(NORMAL, seed), generate_phantom(found, seed), finding_centres(found, seed)[finding]


def test_finding_names_match_the_labeler_vocabulary() -> None:
    assert set(FINDING_NAMES) <= set(FINDINGS)
    assert len(set(FINDING_NAMES)) == len(FINDING_NAMES) == 6


def test_phantom_is_deterministic_float_image() -> None:
    a = generate_phantom(frozenset({"effusion"}), 3)
    b = generate_phantom(frozenset({"effusion"}), 3)
    assert a.dtype == np.float32 and a.shape == (256, 256)
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generate_phantom(frozenset({"effusion"}), 4))
    assert generate_phantom(NORMAL, 3, size=128).shape == (128, 128)


def test_anatomy_varies_with_seed() -> None:
    images = [generate_phantom(NORMAL, s, size=128) for s in range(4)]
    diffs = [np.abs(images[i] - images[j]).mean() for i in range(4) for j in range(i + 1, 4)]
    assert min(diffs) > 0.02  # different patients, not the same picture with noise


def test_positioning_and_exposure_are_consistent() -> None:
    """Well-centred PA films with similar technique, so the findings, not the set-up, tell cases apart."""
    midlines, means = [], []
    for seed in range(24):
        img = generate_phantom(NORMAL, seed)
        body = np.flatnonzero((img[120:200] > 0.25).mean(axis=0) > 0.5)  # columns across the lower thorax
        midlines.append((body[0] + body[-1]) / 2)
        means.append(img.mean())
    assert max(abs(m - 127.5) for m in midlines) <= 4.5  # first phantoms: up to 6 px off centre
    assert float(np.std(midlines)) > 0.5  # still not one pasted-in patient
    assert float(np.std(means)) < 0.035  # first phantoms: 0.048


def test_looks_like_a_radiograph() -> None:
    for seed in SEEDS:
        m = measure(from_array(generate_phantom(NORMAL, seed)))
        img = generate_phantom(NORMAL, seed)
        mediastinum = img[100:160, 118:138].mean()
        corners = np.r_[img[:8, :8].ravel(), img[:8, -8:].ravel()]
        assert m["lung_right"] < mediastinum - 0.25 and m["lung_left"] < mediastinum - 0.25
        assert corners.mean() < 0.2  # air outside the body is black
        assert 0.3 < m["mean_intensity"] < 0.75


def test_unknown_finding_is_refused() -> None:
    with pytest.raises(InputError, match="unknown phantom finding"):
        generate_phantom(frozenset({"dragon"}), 0)
    with pytest.raises(InputError):
        phantom_report(frozenset({"pneumonia"}), 0)


def test_findings_only_change_their_own_pixels() -> None:
    normal = generate_phantom(NORMAL, 5)
    nodule = generate_phantom(frozenset({"nodule/mass"}), 5)
    changed = np.abs(nodule - normal) > 0.02
    assert 0 < changed.mean() < 0.05  # a nodule changes a small patch, nothing else


def test_cardiomegaly_widens_the_heart() -> None:
    normal_ctrs, big_ctrs = [], []
    for seed in SEEDS:
        normal = measure(from_array(generate_phantom(NORMAL, seed)))["ctr"]
        big = measure(from_array(generate_phantom(frozenset({"cardiomegaly"}), seed)))["ctr"]
        assert big > normal + 0.04, seed
        normal_ctrs.append(normal)
        big_ctrs.append(big)
    assert np.median(normal_ctrs) < 0.56 < np.median(big_ctrs)


def test_effusion_whitens_the_lower_lateral_zone_on_its_side() -> None:
    for seed in SEEDS:
        plan = plan_findings({"effusion"}, seed)
        side = {-1: "right", 1: "left", 2: "right"}[plan.effusion_side]
        other = "left" if side == "right" else "right"
        normal = measure(from_array(generate_phantom(NORMAL, seed)))
        eff = measure(from_array(generate_phantom(frozenset({"effusion"}), seed)))
        assert eff[f"lower_zone_{side}"] > normal[f"lower_zone_{side}"] + 0.03, seed
        if plan.effusion_side != 2:
            assert eff[f"lower_zone_{other}"] == pytest.approx(normal[f"lower_zone_{other}"], abs=0.01)


def test_pneumothorax_darkens_the_apicolateral_rim_and_removes_markings() -> None:
    for seed in SEEDS:
        normal, ptx, centre = _pair("pneumothorax", seed)
        # clearly lucent (the first phantoms darkened it by 0.11-0.14, too subtle to retrieve)
        assert _disc(ptx, centre).mean() < _disc(normal, centre).mean() - 0.15, seed


def test_consolidation_and_edema_add_air_space_opacity() -> None:
    gains = []
    for seed in SEEDS:
        normal, cons, centre = _pair("consolidation", seed)
        gains.append(_disc(cons, centre, 10).mean() - _disc(normal, centre, 10).mean())
        n = measure(from_array(normal))
        e = measure(from_array(generate_phantom(frozenset({"edema"}), seed)))
        assert e["lung_right"] > n["lung_right"] + 0.04 and e["lung_left"] > n["lung_left"] + 0.04
    assert min(gains) > 0 and float(np.mean(gains)) > 0.1


def test_nodule_is_a_bright_round_spot_where_planned() -> None:
    for seed in SEEDS:
        normal, nodule, centre = _pair("nodule/mass", seed)
        assert _disc(nodule, centre, 2).mean() > _disc(normal, centre, 2).mean() + 0.08, seed
        # at least 2 cm: about 100 pixels at 256 px (a 1 cm nodule covers ~30)
        assert int(((nodule - normal) > 0.1).sum()) >= 100, seed
        assert plan_findings({"nodule/mass"}, seed).nodule_mm >= 20


def test_report_matches_findings_and_negates_absent_ones() -> None:
    normal = phantom_report(NORMAL, 1)
    assert normal.startswith("FINDINGS: ") and "\nIMPRESSION: " in normal
    assert re.search(r"No (pleural effusion or pneumothorax|pneumothorax or pleural effusion)\.", normal)
    assert "No pulmonary edema" in normal or "No signs of pulmonary edema" in normal

    plan = plan_findings({"effusion"}, 2)
    side = {-1: "right", 1: "left", 2: "bilateral"}[plan.effusion_side]
    report = phantom_report(frozenset({"effusion"}), 2)
    assert f"{side} pleural effusion" in report.lower()
    assert "No pneumothorax." in report and "No pleural effusion" not in report

    both = phantom_report(frozenset({"cardiomegaly", "edema"}), 3)
    assert "edema" in both.split("IMPRESSION:")[1].lower()
    assert "No pulmonary edema" not in both


def test_report_wording_varies_with_seed_but_is_deterministic() -> None:
    reports = {phantom_report(NORMAL, s) for s in range(12)}
    assert len(reports) > 4
    assert phantom_report(NORMAL, 7) == phantom_report(NORMAL, 7)


def test_label_for_uses_fixed_order() -> None:
    assert label_for(()) == "normal"
    assert label_for({"edema", "cardiomegaly"}) == "cardiomegaly + edema"


def test_demo_mix_proportions() -> None:
    mix = demo_mix(240, seed=0)
    assert len(mix) == 240
    assert sum(1 for f in mix if not f) == 72  # 30 % normal
    singles = [next(iter(f)) for f in mix if len(f) == 1]
    assert {name: singles.count(name) for name in FINDING_NAMES} == {name: 20 for name in FINDING_NAMES}
    assert sum(1 for f in mix if len(f) == 2) == 48
    assert demo_mix(240, seed=0) == mix and demo_mix(240, seed=1) != mix


def test_build_demo_library_writes_csv_and_images_idempotently(tmp_path: Path) -> None:
    csv_path = build_demo_library(tmp_path / "demo", n=20, seed=0)
    assert csv_path == tmp_path / "demo" / "labels.csv"
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 20
    assert len({r["patient_id"] for r in rows}) == 20
    for row in rows:
        assert row["dataset"] == "synthetic" and row["synthetic"] == "true" and row["view"] == "PA"
        findings = [f for f in row["findings"].split("|") if f]
        assert row["label"] == label_for(findings)
        assert "IMPRESSION:" in row["report"]
        image = load_image(tmp_path / "demo" / row["image"])
        assert image.shape == (256, 256) and image.meta["format"] == "png"
    assert sum(1 for r in rows if r["label"] == "normal") == 6

    files = sorted((tmp_path / "demo").rglob("*"))
    stamps = {p: p.stat().st_mtime_ns for p in files if p.is_file()}
    assert build_demo_library(tmp_path / "demo", n=20, seed=0) == csv_path
    assert {p: p.stat().st_mtime_ns for p in files if p.is_file()} == stamps  # nothing rewritten
    assert not list((tmp_path / "demo").rglob("*.tmp"))
