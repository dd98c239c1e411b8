"""medrag-cnn: the committed weights, the reader's outputs, the heatmap, and the training loop's reproducibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrag.errors import BackendUnavailableError, InputError
from medrag.fsutil import file_sha256
from medrag.reading.cnn import CLASSES, META_NAME, WEIGHTS_DIR, WEIGHTS_NAME, CnnReader

NIH_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih-train"


@pytest.fixture(scope="module")
def reader() -> CnnReader:
    """The repository's reader, loaded once."""
    cnn = CnnReader()
    cnn.load()
    return cnn


@pytest.fixture(scope="module")
def nih_train() -> Path:
    """../shared/data/nih-train, or skip with the reason."""
    if not (NIH_TRAIN / "labels.csv").is_file():
        pytest.skip(f"NIH training films not found at {NIH_TRAIN} (they live beside the repository, never in it)")
    return NIH_TRAIN


def _film(seed: int = 0, shape: tuple[int, int] = (300, 260)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    base = 0.3 + 0.4 * np.exp(-((xx - 0.45) ** 2 + (yy - 0.55) ** 2) / 0.05)
    return np.clip(base + rng.normal(0, 0.03, shape), 0, 1).astype(np.float32)


def test_committed_weights_match_their_json_stamp() -> None:
    meta = json.loads((WEIGHTS_DIR / META_NAME).read_text(encoding="utf-8"))
    weights = WEIGHTS_DIR / WEIGHTS_NAME
    assert file_sha256(weights) == meta["weights_sha256"]
    members = [WEIGHTS_DIR / m["file"] for m in meta.get("members", [])]
    assert [file_sha256(m) for m in members] == [m["sha256"] for m in meta.get("members", [])]
    assert sum(f.stat().st_size for f in [weights, *members]) <= 25 * 1024 * 1024  # every network together
    assert tuple(meta["classes"]) == CLASSES
    assert set(meta["calibration"]["a"]) == set(CLASSES) == set(meta["thresholds"])
    for key in ("sha256", "label_files_sha256", "train_films", "held_out_films"):
        assert key in meta["data"]
    assert meta["seed"] == 0 and meta["epochs"] >= 1 and meta["train_seconds"] > 0
    assert "cnn_train" in meta["command"]
    auc = meta["metrics"]["held_out"]["per_class"]["effusion"]
    assert auc["auc_ci95"][0] <= auc["auc"] <= auc["auc_ci95"][1]


def test_predict_gives_every_class_a_probability(reader: CnnReader) -> None:
    probs = reader.predict(_film())
    assert set(probs) == set(CLASSES)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    # 8-bit input and float input are the same image
    assert reader.predict((_film() * 255).round().astype(np.uint8)) == pytest.approx(probs, abs=0.02)


def test_heatmap_has_the_input_shape_and_unit_range(reader: CnnReader) -> None:
    pixels = _film(1, (240, 200))
    for name in ("effusion", "cardiomegaly", "nodule/mass"):
        heat = reader.heatmap(pixels, name)
        assert heat.shape == pixels.shape and heat.dtype == np.float32
        assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0
    with pytest.raises(InputError, match="choose one of"):
        reader.heatmap(pixels, "fracture")


def test_reader_refuses_missing_or_altered_weights(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="cnn_train"):
        CnnReader(tmp_path / "nowhere").load()
    shutil.copy(WEIGHTS_DIR / META_NAME, tmp_path / META_NAME)
    data = bytearray((WEIGHTS_DIR / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(BackendUnavailableError, match="sha256"):
        CnnReader(tmp_path).load()


def _tiny_films(tmp_path: Path) -> tuple[list[Any], Any]:
    """Four small synthetic films with made-up labels, and their label tensor."""
    import torch
    from PIL import Image

    from medrag.training.cnn_data import Film

    films = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray((_film(i, (256, 256)) * 255).astype(np.uint8)).save(path)
        films.append(Film(path.name, path, f"p{i}", tuple(int((i + j) % 3 == 0) for j in range(len(CLASSES))), ()))
    return films, torch.tensor([f.labels for f in films], dtype=torch.float32)


def test_training_loop_is_reproducible(tmp_path: Path) -> None:
    import torch

    from medrag.reading.cnn import build_network
    from medrag.training.cnn_train import extract, train_top

    films, labels = _tiny_films(tmp_path)

    def one_step() -> list[float]:
        torch.manual_seed(0)
        model = build_network()
        feats = extract(model, films, views=2, size=64, seed=0, batch=4, log=False)
        return train_top(model, feats, labels, epochs=1, seed=0, batch=4, max_steps=1, log=False)

    first, second = one_step(), one_step()
    assert len(first) == 1 and np.isfinite(first[0])
    assert first == second


def test_full_fine_tune_is_reproducible_and_moves_the_trunk(tmp_path: Path) -> None:
    import torch

    from medrag.reading.cnn import build_network
    from medrag.training.cnn_full import film_logits, train_full

    films, labels = _tiny_films(tmp_path)

    def one_step() -> tuple[list[float], torch.Tensor, torch.Tensor, np.ndarray]:
        torch.manual_seed(0)
        model = build_network()
        stem = model.conv_stem.weight.detach().clone()
        losses = train_full(model, films, labels, epochs=1, seed=0, size=64, batch=4, max_steps=1, log=False)
        return losses, stem, model.conv_stem.weight.detach().clone(), film_logits(model, films, 64)

    first, second = one_step(), one_step()
    assert len(first[0]) == 1 and np.isfinite(first[0][0])
    assert first[0] == second[0]
    assert torch.equal(first[2], second[2])
    assert not torch.equal(first[1], first[2])  # the stem trained too, unlike the cached recipe
    assert first[3].shape == (4, len(CLASSES)) and np.array_equal(first[3], second[3])


def test_weight_soup_is_the_members_mean_and_keeps_integer_buffers() -> None:
    import torch

    from medrag.reading.cnn import build_network
    from medrag.training.cnn_train import average_weights

    torch.manual_seed(0)
    first = build_network().state_dict()
    torch.manual_seed(1)
    second = build_network().state_dict()
    second["bn2.num_batches_tracked"] = torch.tensor(7)
    soup = average_weights([first, second])
    assert soup.keys() == first.keys()
    w = "classifier.weight"
    low, high = torch.minimum(first[w], second[w]), torch.maximum(first[w], second[w])
    assert bool(((soup[w] >= low) & (soup[w] <= high)).all())
    assert not torch.equal(soup[w], first[w]) and not torch.equal(soup[w], second[w])
    assert soup["bn2.num_batches_tracked"].dtype == first["bn2.num_batches_tracked"].dtype
    assert int(soup["bn2.num_batches_tracked"]) == int(first["bn2.num_batches_tracked"])
    alone = average_weights([first])
    assert all(torch.equal(alone[k], first[k]) for k in first)
    with pytest.raises(ValueError, match="at least one"):
        average_weights([])


def test_metric_helpers_agree_with_references() -> None:
    from sklearn.metrics import roc_auc_score

    from medrag.training.cnn_eval import box_hits, ece, safe_auc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)
    assert safe_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(safe_auc(np.zeros(5), s[:5]))
    p = rng.uniform(size=20000)
    assert ece(p, (rng.uniform(size=20000) < p).astype(int)) < 0.02
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[2, 7] = 1.0
    assert box_hits([heat, heat], [(0.6, 0.1, 0.2, 0.2), (0.0, 0.0, 0.5, 0.5)]) == [True, False]


def test_training_data_matches_the_stamp(nih_train: Path) -> None:
    from medrag.training.cnn_data import data_sha256, load_films, split_patients

    meta = json.loads((WEIGHTS_DIR / META_NAME).read_text(encoding="utf-8"))
    films, label_files = load_films(nih_train.parent)
    assert len(films) == meta["data"]["films"] and len({f.patient for f in films}) == meta["data"]["patients"]
    assert data_sha256(films) == meta["data"]["sha256"]
    assert label_files == meta["data"]["label_files_sha256"]
    held = split_patients(films, 0.2, meta["seed"])
    assert int(held.sum()) == meta["data"]["held_out_films"]
    train_patients = {f.patient for f, h in zip(films, held, strict=True) if not h}
    assert not train_patients & {f.patient for f, h in zip(films, held, strict=True) if h}
    assert all(h for f, h in zip(films, held, strict=True) if f.boxes)


def test_real_effusion_film_scores_above_a_no_finding_film(reader: CnnReader, nih_train: Path) -> None:
    """On held-out films, the mean effusion probability of effusion films exceeds that of no-finding films."""
    import csv

    from medrag.training.cnn_data import load_films, split_patients

    films, _ = load_films(nih_train.parent)
    held = split_patients(films, 0.2, 0)
    rows = {r["image"]: r["finding_labels"] for r in csv.DictReader(open(nih_train / "labels.csv", encoding="utf-8"))}
    held_films = [f for f, h in zip(films, held, strict=True) if h and f.name in rows]
    eff = [f for f in held_films if "Effusion" in rows[f.name]][:8]
    normal = [f for f in held_films if rows[f.name] == "No Finding"][:8]
    assert len(eff) >= 5 and len(normal) >= 5

    def mean_p(group: list) -> float:
        from PIL import Image

        return float(np.mean([reader.predict(np.asarray(Image.open(f.path).convert("L")))["effusion"] for f in group]))

    assert mean_p(eff) > mean_p(normal)


def test_thorax_box_frames_lungs_and_heart() -> None:
    from medrag.reading.cnn import box_from_masks, box_pixels

    lungs = np.zeros((100, 100), dtype=np.float32)
    lungs[20:80, 10:45] = 1.0
    lungs[20:80, 55:90] = 1.0
    heart = np.zeros_like(lungs)
    heart[50:85, 35:70] = 1.0
    top, left, bottom, right = box_from_masks(lungs, heart, margin=0.0)
    assert (top, left, bottom, right) == pytest.approx((0.20, 0.10, 0.85, 0.90))
    assert box_from_masks(np.zeros((10, 10)), np.zeros((10, 10))) == (0.0, 0.0, 1.0, 1.0)
    assert box_pixels((200, 100), (0.2, 0.1, 0.85, 0.9)) == (40, 10, 170, 90)


def test_heatmap_is_zero_outside_the_crop_read(reader: CnnReader) -> None:
    pixels = _film(2, (256, 256))
    heat = reader.heatmap(pixels, "pneumonia", box=(0.25, 0.25, 0.75, 0.75))
    assert heat.shape == pixels.shape
    assert float(heat[:60].max()) == 0.0 and float(heat[:, 200:].max()) == 0.0
    inside = float(heat[64:192, 64:192].max())
    assert inside == pytest.approx(1.0, abs=1e-6) or inside == 0.0  # scaled to its peak (all zero if no evidence)


def test_flip_averaging_is_the_mean_of_the_film_and_its_mirror(reader: CnnReader) -> None:
    """The shipped stamp says "flip": an analysis's logits are the mean of the film's and of its mirror image's,
    its calibration was fitted on such logits, and the heatmap still comes from the film as it is (not mirrored)."""
    import torch

    assert reader.test_time == "flip"
    assert reader.meta["metrics"]["held_out"]["macro_auc"]["value"] != \
        reader.meta["metrics"]["held_out_single"]["macro_auc"]["value"]
    pixels = _film(2, (260, 240))
    pixels[:, :60] += 0.3  # a bright band on one side: the film and its mirror must read differently
    x, _crop, _shape = reader.network_input(np.clip(pixels, 0, 1))
    _f, plain = reader.raw_logits(x, flip=False)
    _f, mirror = reader.raw_logits(torch.flip(x, dims=(-1,)), flip=False)
    assert np.abs(plain - mirror).max() > 1e-3
    out = reader.forward(np.clip(pixels, 0, 1))
    averaged = np.array([out.logits[c] for c in CLASSES])
    # float32 convolutions batched in two or one at a time round differently: compare far inside the gap
    assert np.abs(averaged - (plain + mirror) / 2).max() < 0.1 * np.abs(plain - mirror).max()
    features, _ = reader.raw_logits(x, flip=False)
    assert out.features.shape == features.shape
    assert torch.allclose(out.features, features, rtol=1e-3, atol=1e-3 * float(features.abs().max()))


def test_single_pass_when_the_stamp_does_not_ask_for_flip(tmp_path: Path) -> None:
    meta = json.loads((WEIGHTS_DIR / META_NAME).read_text(encoding="utf-8"))
    for name in (WEIGHTS_NAME, *(m["file"] for m in meta.get("members", []))):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    del meta["test_time"]
    (tmp_path / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
    single = CnnReader(tmp_path)
    assert single.test_time == "none"
    pixels = _film(3)
    x, _crop, _shape = single.network_input(pixels)
    _f, plain = single.raw_logits(x, flip=False)
    got = np.array([single.forward(pixels).logits[c] for c in CLASSES])
    assert np.abs(got - plain).max() <= 1e-4 * max(1.0, float(np.abs(plain).max()))
