"""The anatomy reader: segmentation Dice, ratio, patient-side zones, view, devices, lazy offline loading."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medrag.phantoms import generate_phantom
from medrag.phantoms.plan import plan_findings
from medrag.reading.base import ZONES
from medrag.reading.phantom_masks import phantom_masks
from medrag.reading.zones import ZoneNorms, split_lungs, zone_masks

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "medrag" / "reading" / "weights"
#: held-out phantom seeds (training used seeds below 900 000)
HELD_OUT = 900_000


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_import_does_not_load_torch() -> None:
    code = ("import sys, medrag.reading.anatomy, medrag.reading.view, medrag.reading.devices; "
            "assert 'torch' not in sys.modules, 'torch imported at import time'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_weights_are_small_and_stamped() -> None:
    weights = WEIGHTS / "segment.safetensors"
    assert weights.stat().st_size <= 10 * 1024 * 1024
    stamp = json.loads((WEIGHTS / "segment.json").read_text())
    assert len(stamp["training_data_sha256"]) == 64
    assert {"seed", "epochs", "command", "metrics"} <= set(stamp)
    assert stamp["command"].startswith("python -m medrag.training.segment_train")
    # The held-out patients were never trained on.
    assert not set(stamp["held_out"]["cxr_masks_patients"]) & set(stamp["training_data"]["cxr_masks_patients"])


def test_segmenter_loads_offline_from_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the segmenter tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from medrag.reading.segment import SEGMENT_WEIGHTS, Segmenter

    assert ROOT in SEGMENT_WEIGHTS.resolve().parents
    seg = Segmenter().segment(generate_phantom(frozenset(), HELD_OUT + 50, 256))
    assert seg.lungs.shape == seg.heart.shape


@pytest.mark.parametrize("findings", [frozenset(), frozenset({"effusion"}), frozenset({"cardiomegaly"}),
                                      frozenset({"consolidation"}), frozenset({"pneumothorax", "edema"})])
def test_dice_on_held_out_phantoms(findings: frozenset[str]) -> None:
    from medrag.reading.segment import default_segmenter, upsample

    lung_scores, heart_scores = [], []
    for seed in range(HELD_OUT + 10, HELD_OUT + 13):
        image = generate_phantom(findings, seed, 256)
        lungs, heart = phantom_masks(findings, seed, 256)
        seg = default_segmenter().segment(image)
        lung_scores.append(_dice(upsample(seg.lungs, (256, 256)) > 0.5, lungs > 0.5))
        heart_scores.append(_dice(upsample(seg.heart, (256, 256)) > 0.5, heart > 0.5))
    assert np.mean(lung_scores) >= 0.92, lung_scores
    assert np.mean(heart_scores) >= 0.90, heart_scores


@pytest.mark.parametrize("findings", [frozenset(), frozenset({"cardiomegaly"}), frozenset({"effusion"})])
def test_ctr_matches_the_phantom_geometry(findings: frozenset[str]) -> None:
    from medrag.reading.anatomy import read_anatomy

    for seed in (HELD_OUT + 20, HELD_OUT + 21):
        reading = read_anatomy(generate_phantom(findings, seed, 256), view_hint="PA")
        truth = plan_findings(findings, seed).ctr
        assert reading.ctr is not None
        assert abs(reading.ctr - truth) <= 0.05, (reading.ctr, truth)
        assert reading.ctr_reliable


@pytest.fixture(scope="module")
def phantom_norms() -> ZoneNorms:
    """Zone norms of a phantom library's normal cases (as a demo library would fit them)."""
    from medrag.reading.anatomy import read_anatomy

    samples = []
    for seed in range(HELD_OUT + 100, HELD_OUT + 116):
        reading = read_anatomy(generate_phantom(frozenset(), seed, 256), view_hint="PA", norms=ZoneNorms())
        samples.append({zone: values["mean"] for zone, values in reading.zones.items()})
    return ZoneNorms.fit(samples, source="normal phantoms")


@pytest.mark.parametrize(("side", "seeds"), [(-1, (HELD_OUT + 2, HELD_OUT + 3)), (1, (HELD_OUT, HELD_OUT + 1))])
def test_effusion_raises_the_lower_zone_on_the_patients_side(side: int, seeds: tuple[int, ...],
                                                             phantom_norms: ZoneNorms) -> None:
    from medrag.reading.anatomy import read_anatomy

    expected = "right lower zone" if side == -1 else "left lower zone"
    for seed in seeds:
        assert plan_findings({"effusion"}, seed).effusion_side == side
        reading = read_anatomy(generate_phantom(frozenset({"effusion"}), seed, 256), view_hint="PA",
                               norms=phantom_norms)
        z = {zone: values["z"] for zone, values in reading.zones.items()}
        assert max(z, key=lambda k: z[k]) == expected, z


def test_reading_fields_and_ap_caveat() -> None:
    from medrag.reading.anatomy import read_anatomy

    image = generate_phantom(frozenset(), HELD_OUT + 30, 256)
    pa = read_anatomy(image, view_hint="PA")
    assert set(pa.zones) == set(ZONES)
    assert all(math.isfinite(v["mean"]) and math.isfinite(v["z"]) for v in pa.zones.values())
    assert set(pa.cp_angles) == {"right", "left"}
    assert all(20 < v["angle"] < 95 for v in pa.cp_angles.values()), pa.cp_angles
    assert pa.view == ("PA", 1.0) and pa.view_source == "hint"
    assert pa.ctr_method == "heart mask" and pa.heart_confidence >= 0.85
    assert pa.lungs.shape == pa.heart.shape and pa.scale == (2.0, 2.0)
    assert 0 < pa.seconds < 5
    # The patient's right lung is on the image's left.
    rows, cols = np.nonzero(pa.right_lung)
    assert cols.mean() < pa.lungs.shape[1] / 2
    assert set(pa.contours()) == {"right lung", "left lung", "heart"}
    ap = read_anatomy(image, view_hint="AP")
    assert not ap.ctr_reliable and any("AP" in note for note in ap.notes)
    auto = read_anatomy(image)
    assert auto.view_source == "classifier" and auto.view[0] in ("PA", "AP", "lateral")


def test_split_lungs_names_sides_by_the_patient() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:50, 5:25] = True  # image left = patient's right
    mask[12:48, 38:58] = True
    right, left = split_lungs(mask)
    assert right[:, :32].sum() == right.sum() > 0 and left[:, 32:].sum() == left.sum() > 0
    touching = mask.copy()
    touching[40:48, 20:45] = True  # the lungs meet behind the heart: one component
    right, left = split_lungs(touching)
    assert right[20, 10] and left[20, 50] and not right[20, 50] and not left[20, 10]
    zones = zone_masks(right, left)
    assert set(zones) == set(ZONES)
    assert zones["right upper zone"][12, 10] and zones["right lower zone"][45, 10]


def test_zone_norms_fit_save_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = [{zone: float(rng.normal(1.0, 0.2)) for zone in ZONES} for _ in range(40)]
    norms = ZoneNorms.fit(samples, ["PA"] * 20 + ["AP"] * 20, source="test")
    norms.save(tmp_path / "norms.json")
    again = ZoneNorms.load(tmp_path / "norms.json")
    assert set(again.stats) == {"all", "PA", "AP"}
    z = again.z_scores({"right lower zone": 1.0 + 3 * again.stats["PA"]["right lower zone"][1]}, "PA")
    assert z["right lower zone"] == pytest.approx(3.0 + (1.0 - again.stats["PA"]["right lower zone"][0])
                                                  / again.stats["PA"]["right lower zone"][1], abs=1e-3)


def test_shipped_norms_come_from_nih_normals() -> None:
    from medrag.reading.zones import default_norms

    norms = default_norms()
    assert "No Finding" in norms.source and {"all", "PA", "AP"} <= set(norms.stats)
    assert all(norms.stats["all"][zone][2] >= 100 for zone in ZONES)


def test_lateral_heuristic() -> None:
    from medrag.reading.view import lateral_score

    one_field = np.zeros((64, 64), dtype=bool)
    one_field[10:55, 12:52] = True
    two_lungs = np.zeros((64, 64), dtype=bool)
    two_lungs[10:55, 5:25] = True
    two_lungs[10:55, 38:58] = True
    assert lateral_score(one_field) >= 0.75 > lateral_score(two_lungs)


def test_devices_found_on_a_phantom_with_drawn_devices() -> None:
    from medrag.reading.devices import ECG, LINE, detect_devices

    image = generate_phantom(frozenset(), HELD_OUT + 40, 256)
    assert not detect_devices(image), "a clean phantom has no devices"
    drawn = image.copy()
    rr, cc = np.ogrid[:256, :256]
    for r, c in ((60, 40), (70, 215), (150, 30)):  # electrodes: small bright discs
        drawn[(rr - r) ** 2 + (cc - c) ** 2 <= 9] = 1.0
    for r in range(40, 200):  # a thin line down the right hemithorax
        drawn[r, 95 + (r - 40) // 8: 97 + (r - 40) // 8] = 1.0
    kinds = {mark.kind for mark in detect_devices(drawn)}
    assert {ECG, LINE} <= kinds


def _held_out_view_films(real_data: Path) -> list[dict[str, str]]:
    meta = json.loads((WEIGHTS / "view.json").read_text())["meta"]
    held = set(meta["held_out_nih"]["patient_ids"])
    with open(real_data / "labels.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dataset"] == "nih" and r["patient_id"] in held]
    return rows[:24]


@pytest.mark.realdata
def test_view_on_held_out_real_films(real_data: Path) -> None:
    from PIL import Image

    from medrag.reading.anatomy import read_anatomy

    rows = _held_out_view_films(real_data)
    assert len(rows) >= 12
    correct = 0
    for row in rows:
        pixels = np.asarray(Image.open(real_data / row["image"]).convert("L"), dtype=np.float32) / 255.0
        correct += read_anatomy(pixels).view[0] == row["view"]
    assert correct / len(rows) >= 0.8, f"{correct}/{len(rows)}"


@pytest.mark.realdata
def test_heart_on_real_films_falls_back_to_the_brightness_profile(real_data: Path) -> None:
    from PIL import Image

    from medrag.reading.anatomy import read_anatomy

    with open(real_data / "labels.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dataset"] == "nih" and r["view"] == "PA"
                and r["fine_label"] == "No Finding"][:10]
    ratios = []
    for row in rows:
        pixels = np.asarray(Image.open(real_data / row["image"]).convert("L"), dtype=np.float32) / 255.0
        reading = read_anatomy(pixels, view_hint="PA")
        assert reading.ctr_method == "brightness profile", reading.heart_confidence
        if reading.ctr is not None:
            ratios.append(reading.ctr)
    assert len(ratios) >= 8
    assert 0.3 <= float(np.median(ratios)) <= 0.55, ratios


@pytest.mark.parametrize(("view", "ctr", "expected"), [
    ("PA", 0.56, "present"), ("PA", 0.52, "uncertain"), ("PA", 0.42, "absent"),
    ("AP", 0.65, "uncertain"), ("AP", 0.53, "uncertain"), ("AP", 0.45, "absent"),
])
def test_cardiomegaly_bands_follow_the_view(view: str, ctr: float, expected: str) -> None:
    from dataclasses import replace

    from medrag.reading.anatomy import read_anatomy
    from medrag.reading.anatomy_reader import findings_from_anatomy

    base = read_anatomy(generate_phantom(frozenset(), HELD_OUT + 30, 256), view_hint="PA")
    reading = replace(base, ctr=ctr, ctr_reliable=view == "PA", view=(view, 1.0))
    found = findings_from_anatomy(reading)["cardiomegaly"]
    assert found.status == expected
    assert f"{ctr:.2f}" in found.evidence
    assert ("unreliable" in found.evidence) == (view == "AP")  # an AP ratio is never stated as reliable


def test_the_view_classifier_was_fitted_on_the_shipped_segmenter() -> None:
    """view.json's features come from the segmenter: retrain it (view_train) whenever segment.safetensors changes."""
    from medrag.fsutil import file_sha256

    meta = json.loads((WEIGHTS / "view.json").read_text())["meta"]
    fitted_on = meta.get("segment_weights_sha256") or meta.get("segmenter")
    assert fitted_on == file_sha256(WEIGHTS / "segment.safetensors"), (
        "view.json was fitted on another segmenter; run `python -m medrag.training.view_train`")
