"""The classic weight-free encoder: contract, determinism, sizes, fitted state, quality."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medrag.config import Settings
from medrag.encoders import FittableEncoder, ImageEncoder, build_encoder, get_encoder_spec
from medrag.encoders.classic import BLOCKS, DIM, STATE_FILE, ClassicEncoder, lbp_codes, raw_features
from medrag.errors import ConfigError, InputError
from medrag.evaluation.retrieval import leave_one_patient_out


def _film(seed: int, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """A smooth random 'radiograph' with 8-bit grain (values on the 1/255 grid, as decoded PNGs are)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((8, 8)).astype(np.float32)
    base = np.asarray(Image.fromarray(coarse, mode="F").resize(shape[::-1], Image.Resampling.BICUBIC))
    noisy = np.clip(base + rng.normal(0, 0.03, shape), 0, 1)
    return (np.round(noisy * 255) / 255).astype(np.float32)


def test_registered_as_weight_free_image_encoder(tmp_path: Path) -> None:
    spec = get_encoder_spec("classic")
    assert spec.kind == "image" and spec.weight_free
    encoder = build_encoder("classic", Settings(data_dir=tmp_path))
    assert isinstance(encoder, ClassicEncoder) and not encoder.is_fitted
    assert isinstance(encoder, ImageEncoder) and isinstance(encoder, FittableEncoder)
    assert encoder.name == "classic" and encoder.dim == DIM


def test_shape_dtype_norm_and_determinism() -> None:
    images = [_film(i) for i in range(4)]
    first = ClassicEncoder().embed(images)
    again = ClassicEncoder().embed(images)
    assert first.shape == (4, DIM) and first.dtype == np.float32 and first.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    # a batch gives the same rows as one image at a time
    np.testing.assert_allclose(ClassicEncoder().embed(images[2:3])[0], first[2], atol=1e-6)
    assert ClassicEncoder().embed([]).shape == (0, DIM)
    # different images differ
    assert float(first[0] @ first[1]) < 0.999


@pytest.mark.parametrize("shape", [(5, 7), (16, 300), (224, 224), (419, 512), (512, 512), (1100, 900)])
def test_any_size_gives_a_unit_vector(shape: tuple[int, int]) -> None:
    vec = ClassicEncoder().embed([_film(1, shape)])
    assert vec.shape == (1, DIM) and np.all(np.isfinite(vec))
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


def test_big_images_are_read_like_their_box_downscale() -> None:
    small = _film(3, (512, 512))
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # 1024 px, each pixel doubled
    a, b = ClassicEncoder().embed([small, big])
    assert float(a @ b) > 0.999


def test_odd_inputs() -> None:
    encoder = ClassicEncoder()
    flat = encoder.embed([np.full((64, 64), 0.5, np.float32)])
    assert np.all(np.isfinite(flat)) and np.linalg.norm(flat) == pytest.approx(1.0, abs=1e-5)
    with_nan = _film(4)
    with_nan[10:20, 10:20] = np.nan
    assert np.all(np.isfinite(encoder.embed([with_nan])))
    out_of_range = encoder.embed([_film(4) * 3 - 1])  # clipped to [0, 1] first
    assert np.all(np.isfinite(out_of_range))
    channel_last = _film(5)[:, :, None]
    np.testing.assert_array_equal(encoder.embed([channel_last]), encoder.embed([_film(5)]))
    with pytest.raises(InputError, match="image 1 .*2-D"):
        encoder.embed([_film(1), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(InputError, match="2-D"):
        encoder.embed([np.zeros((0, 0), np.float32)])


def test_lbp_codes_on_a_hand_checked_patch() -> None:
    # Centre 5. Bit k is set when neighbour k is ≥ the centre, neighbours clockwise from top-left:
    # bit0 (-1,-1)=9 set, bit1 (-1,0)=1, bit2 (-1,1)=9 set, bit3 (0,1)=9 set, bits 4-7 all 1: 0b00001101.
    patch = np.array([[9, 1, 9], [1, 5, 9], [1, 1, 1]], dtype=np.uint8)
    assert int(lbp_codes(patch)[0, 0]) == 0b00001101
    assert lbp_codes(np.zeros((10, 10), np.uint8), row_step=2).shape == (4, 8)


def test_fit_changes_version_and_centres() -> None:
    images = [_film(i) for i in range(6)]
    encoder = ClassicEncoder()
    unfitted_version = encoder.version
    encoder.fit(images)
    assert encoder.is_fitted and encoder.version != unfitted_version
    assert encoder.version.startswith(unfitted_version + "+fit-")
    same = ClassicEncoder()
    same.fit(images)
    assert same.version == encoder.version  # the hash is of the fitted state: same data, same version
    other = ClassicEncoder()
    other.fit(images[:3])
    assert other.version != encoder.version
    # centring: the fitted library's vectors no longer share one dominant direction
    raw_mean_cos = float(np.mean(ClassicEncoder().embed(images) @ ClassicEncoder().embed(images).T))
    fit_mean_cos = float(np.mean(encoder.embed(images) @ encoder.embed(images).T))
    assert fit_mean_cos < raw_mean_cos
    with pytest.raises(InputError, match="at least one image"):
        ClassicEncoder().fit([])


def test_features_fit_features_project_equal_fit_embed() -> None:
    images = [_film(i) for i in range(5)]
    a = ClassicEncoder()
    a.fit(images)
    b = ClassicEncoder()
    feats = b.features(images)
    np.testing.assert_array_equal(feats[1], raw_features(images[1]))
    b.fit_features(feats)
    assert a.version == b.version
    np.testing.assert_allclose(a.embed(images), b.project(feats), atol=1e-6)


def test_state_roundtrip_and_factory_loads_it(tmp_path: Path) -> None:
    images = [_film(i) for i in range(5)]
    encoder = ClassicEncoder()
    with pytest.raises(ConfigError, match="not fitted"):
        encoder.save_state(tmp_path / STATE_FILE)
    encoder.fit(images)
    settings = Settings(data_dir=tmp_path)
    encoder.save_state(settings.models_dir / STATE_FILE)
    assert not list(settings.models_dir.glob("*.tmp"))
    loaded = build_encoder("classic", settings)
    assert isinstance(loaded, ClassicEncoder) and loaded.is_fitted
    assert loaded.version == encoder.version
    np.testing.assert_array_equal(loaded.embed(images), encoder.embed(images))


def test_factory_starts_unfitted_over_a_state_from_an_older_layout(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    state = settings.models_dir / STATE_FILE
    np.savez(state, mean=np.zeros(DIM, np.float32), feature_version=np.array("classic-v2"))
    encoder = build_encoder("classic", settings)
    assert isinstance(encoder, ClassicEncoder) and not encoder.is_fitted  # the workbench re-fits it
    encoder.fit([_film(i) for i in range(3)])
    encoder.save_state(state)
    assert build_encoder("classic", settings).version == encoder.version
    state.write_bytes(b"not an npz")  # a damaged file is still an error, with the way out
    with pytest.raises(ConfigError, match="rebuild"):
        build_encoder("classic", settings)


def test_bad_state_files_raise_config_error(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    path.write_bytes(b"not an npz")
    with pytest.raises(ConfigError, match="rebuild"):
        ClassicEncoder().load_state(path)
    np.savez(path, mean=np.zeros(DIM, np.float32), feature_version=np.array("classic-v0"))
    with pytest.raises(ConfigError, match="classic-v0"):
        ClassicEncoder().load_state(path)
    # a state fitted before the layout blocks (classic-v2) is refused, with the way out
    np.savez(path, mean=np.zeros(DIM, np.float32), feature_version=np.array("classic-v2"))
    with pytest.raises(ConfigError, match="classic-v2.*rebuild"):
        ClassicEncoder().load_state(path)
    np.savez(path, mean=np.zeros(7, np.float32), feature_version=np.array(ClassicEncoder().version))
    with pytest.raises(ConfigError, match="shape"):
        ClassicEncoder().load_state(path)
    with pytest.raises(ConfigError):
        ClassicEncoder().load_state(tmp_path / "missing.npz")


def _layout(image: np.ndarray) -> np.ndarray:
    """The layout_mean block of ``raw_features`` (found by name in BLOCKS)."""
    start = 0
    for name, length, _ in BLOCKS:
        if name == "layout_mean":
            return raw_features(image)[start : start + length]
        start += length
    raise AssertionError("no layout_mean block")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_layout_follows_the_body_not_the_frame() -> None:
    from medrag.phantoms import generate_phantom

    for seed in (3, 8):
        chest = generate_phantom(frozenset(), seed, 192)
        moved = np.zeros((256, 256), np.float32)
        moved[40:232, 20:212] = chest  # same patient, smaller in the frame and off-centre
        enlarged = generate_phantom(frozenset({"cardiomegaly"}), seed, 192)
        same = _cos(_layout(chest), _layout(moved))
        assert same > 0.98  # an uncropped 6x6 grid: 0.26-0.36
        assert same > _cos(_layout(chest), _layout(enlarged)) + 0.02


@pytest.mark.slow
def test_demo_library_neighbours_share_the_label() -> None:
    """The demo library as users first see it: 240 phantoms, 13 labels, top-5 neighbours, leave-one-out."""
    from medrag.phantoms import demo_mix, generate_phantom, label_for

    mix = demo_mix(240, seed=0)
    # the seeds and 8-bit rounding of build_demo_library's PNGs
    images = [np.round(generate_phantom(f, i, 256) * 255).astype(np.float32) / 255 for i, f in enumerate(mix)]
    labels = [label_for(f) for f in mix]
    patients = [str(i) for i in range(len(mix))]
    encoder = ClassicEncoder()
    encoder.fit(images)
    vectors = encoder.embed(images)
    exact = leave_one_patient_out(vectors, labels, patients).overall.precision[5]
    kinds = ["normal" if label == "normal" else "abnormal" for label in labels]
    agree = leave_one_patient_out(vectors, kinds, patients).overall.precision[5]
    # measured (exp11): 0.647 and 0.917; classic-v2 on the first phantoms 0.329 and 0.675 (chance ~0.12)
    assert exact >= 0.6 and agree >= 0.85, (exact, agree)


@pytest.mark.slow
@pytest.mark.realdata
def test_nih_normal_vs_pneumonia_precision_at_10(real_data: Path) -> None:
    """The headline figure: leave-one-patient-out P@10 ≥ 0.76 (chance 0.50, raw thumbnails ≈ 0.64–0.66).

    Measured: classic-v2 0.783, classic-v3 0.773 (exp11)."""
    from medrag.imaging import load_image

    with open(real_data / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = [
            r for r in csv.DictReader(fh) if r["dataset"] == "nih" and r["label"] in ("normal", "pneumonia")
        ]
    assert len(rows) == 521
    images = [load_image(real_data / r["image"]).pixels for r in rows]
    encoder = ClassicEncoder()
    encoder.fit(images)  # unsupervised, on the library itself, as `medrag index` does
    report = leave_one_patient_out(
        encoder.embed(images), [r["label"] for r in rows], [r["patient_id"] for r in rows]
    )
    assert report.overall.n == 521
    assert report.overall.precision[10] >= 0.76, report.to_table()
