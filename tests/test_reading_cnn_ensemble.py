"""medrag-cnn as an ensemble: the stamp's ``members`` read with the first network, checked, named and measured."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medrag.errors import BackendUnavailableError, ConfigError
from medrag.fsutil import file_sha256
from medrag.reading.cnn import CLASSES, META_NAME, WEIGHTS_DIR, WEIGHTS_NAME, CnnReader, build_network
from medrag.training.cnn_ensemble import check_member, write_half


def _film(seed: int = 0, shape: tuple[int, int] = (280, 250)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    base = 0.3 + 0.4 * np.exp(-((xx - 0.4) ** 2 + (yy - 0.6) ** 2) / 0.04)
    return np.clip(base + rng.normal(0, 0.03, shape), 0, 1).astype(np.float32)


def _single_meta() -> dict[str, Any]:
    """The shipped stamp with its first network alone."""
    meta = json.loads((WEIGHTS_DIR / META_NAME).read_text(encoding="utf-8"))
    meta.pop("members", None)
    return meta


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three weight folders: the shipped first network alone, another (seeded, untrained head) network alone,
    and the two as an ensemble (the second in float16, as ``cnn_ensemble --write`` stores it)."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("ensemble")
    first, other, both = root / "first", root / "other", root / "both"
    for folder in (first, other, both):
        folder.mkdir()
    meta = _single_meta()
    for folder in (first, both):
        shutil.copy(WEIGHTS_DIR / WEIGHTS_NAME, folder / WEIGHTS_NAME)
    (first / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
    torch.manual_seed(7)
    network = build_network()
    full = root / "other-float32.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(full))
    sha = write_half(full, both / "medrag-cnn-member1.safetensors")
    shutil.copy(both / "medrag-cnn-member1.safetensors", other / WEIGHTS_NAME)
    (other / META_NAME).write_text(json.dumps({**meta, "weights_sha256": sha}), encoding="utf-8")
    (both / META_NAME).write_text(json.dumps({**meta, "members": [{"file": "medrag-cnn-member1.safetensors",
                                                                   "sha256": sha, "dtype": "float16"}]}),
                                  encoding="utf-8")
    return {"first": first, "other": other, "both": both}


def test_an_ensemble_reads_the_mean_of_its_networks_logits(folders: dict[str, Path]) -> None:
    first, other, both = (CnnReader(folders[k]) for k in ("first", "other", "both"))
    assert len(both.networks()) == 2 and len(first.networks()) == 1
    pixels = _film(1)
    a, b, ab = (np.array([r.forward(pixels).logits[c] for c in CLASSES]) for r in (first, other, both))
    gap = float(np.abs(a - b).max())
    assert gap > 0.1  # two different networks: the test below can tell a mean from either of them
    # float32 convolutions batched differently round differently: compare far inside the gap
    assert np.abs(ab - (a + b) / 2).max() < 0.05 * gap
    probabilities = both.forward(pixels).probabilities
    assert set(probabilities) == set(CLASSES) and all(0.0 <= p <= 1.0 for p in probabilities.values())


def test_the_ensemble_heatmap_weighs_every_networks_features(folders: dict[str, Path]) -> None:
    """A class-activation map is faithful when its mean over the map, plus the bias, is the logit: for an
    ensemble that holds with every network's features side by side and their classifier rows halved."""
    import torch

    both = CnnReader(folders["both"])
    x, _crop, _shape = both.network_input(_film(2))
    features, logits = both.raw_logits(x, flip=False)
    assert features.shape[1] == 2 * CnnReader(folders["first"]).raw_logits(x, flip=False)[0].shape[1]
    bias = torch.stack([n.get_classifier().bias for n in both.networks()]).mean(0)
    pooled = both.class_weights() @ features.mean(dim=(2, 3))[0] + bias
    assert np.abs(pooled.detach().numpy() - logits).max() < 1e-3 * max(1.0, float(np.abs(logits).max()))
    heat = both.heatmap(_film(2), "effusion")
    assert heat.shape == _film(2).shape and 0.0 <= float(heat.min()) and float(heat.max()) <= 1.0


def test_a_member_that_changed_or_went_missing_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    for name in (WEIGHTS_NAME, META_NAME, "medrag-cnn-member1.safetensors"):
        shutil.copy(folders["both"] / name, tmp_path / name)
    member = tmp_path / "medrag-cnn-member1.safetensors"
    member.write_bytes(member.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(BackendUnavailableError, match="member1.safetensors has sha256"):
        CnnReader(tmp_path).load()
    member.unlink()
    with pytest.raises(BackendUnavailableError, match="member1.safetensors; restore"):
        CnnReader(tmp_path).load()


def test_the_identity_names_every_member(folders: dict[str, Path]) -> None:
    first, both = CnnReader(folders["first"]), CnnReader(folders["both"])
    assert first.identity == first.meta["weights_sha256"] == file_sha256(folders["first"] / WEIGHTS_NAME)
    assert both.identity != first.identity and len(both.identity) == 64
    changed = copy.deepcopy(both.meta)
    changed["members"][0]["sha256"] = "0" * 64
    assert CnnReader(folders["both"], changed).identity != both.identity  # fitted models go stale with a member
    mirrored = {**both.meta, "test_time": "flip" if both.test_time != "flip" else "none"}
    assert CnnReader(folders["both"], mirrored).identity != both.identity  # ...and with how the films are read


def test_write_half_stores_float16_that_reads_back_close(folders: dict[str, Path]) -> None:
    import torch
    from safetensors.torch import load_file

    original = load_file(str(folders["first"].parent / "other-float32.safetensors"))
    half = load_file(str(folders["other"] / WEIGHTS_NAME))
    assert set(half) == set(original)
    for name, value in original.items():
        if not value.is_floating_point():
            assert torch.equal(half[name], value)  # counters stay integers
            continue
        assert half[name].dtype == torch.float16
        scale = float(value.abs().max())
        assert float((half[name].float() - value).abs().max()) <= 1e-3 * max(scale, 1e-3), name


def test_a_member_must_share_the_patients_data_and_input() -> None:
    meta = _single_meta()
    check_member(meta, copy.deepcopy(meta))  # the same recipe's stamp: accepted
    older = copy.deepcopy(meta)
    older.pop("crop", None)
    check_member({**meta, "crop": "none"}, older)  # no "crop" in an older stamp means the whole film
    other_patients = copy.deepcopy(meta)
    other_patients["data"]["train_patients"] = other_patients["data"]["train_patients"][1:]
    with pytest.raises(ConfigError, match="train_patients differs.*same ../shared/data"):
        check_member(meta, other_patients)
    with pytest.raises(ConfigError, match="input_size is 320.*same --size"):
        check_member(meta, {**meta, "input_size": 320})
