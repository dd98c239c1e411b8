"""open_clip encoders (biomedclip, openclip) on a tiny local open_clip model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_checks import assert_embeddings_agree
from medrag.config import Settings
from medrag.encoders import ImageEncoder, TextEncoder, build_encoder, encoder_names, get_encoder_spec
from medrag.encoders import openclip as oc
from medrag.errors import BackendUnavailableError, ConfigError
from medrag.weights import file_fingerprint, import_model
from tiny_models import TINY_CLIP_CAPTIONS, build_tiny_openclip, make_hf_cache_entry, tiny_clip_image

BIOMEDCLIP_REPO = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_openclip(tmp_path_factory.mktemp("tiny") / "clip")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MEDRAG_DEVICE", "cpu")
    monkeypatch.delenv(oc.OPENCLIP_ENV, raising=False)
    return cache


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture()
def encoder(tiny_clip: Path, settings: Settings) -> oc.OpenClipEncoder:
    return oc.openclip_encoder(f"local-dir:{tiny_clip}", settings)


def _class_images(per_class: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(TINY_CLIP_CAPTIONS)), per_class)
    return [tiny_clip_image(int(k), rng, int(rng.integers(50, 120))) for k in labels], labels


def test_registered_as_image_and_text() -> None:
    for name in ("biomedclip", "openclip"):
        assert get_encoder_spec(name).kind == "image+text" and not get_encoder_spec(name).weight_free
        assert name in encoder_names("image") and name in encoder_names("text")


def test_embeddings_shape_norm_dtype(encoder: oc.OpenClipEncoder) -> None:
    assert isinstance(encoder, ImageEncoder) and isinstance(encoder, TextEncoder)
    images, _ = _class_images(2, seed=1)
    vectors = encoder.embed(images)
    texts = encoder.embed_text(list(TINY_CLIP_CAPTIONS))
    assert encoder.dim == 32
    for v, n in ((vectors, len(images)), (texts, len(TINY_CLIP_CAPTIONS))):
        assert v.shape == (n, 32) and v.dtype == np.float32 and v.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert encoder.embed([]).shape == (0, 32) and encoder.embed_text([]).shape == (0, 32)


def test_text_to_image_search(encoder: oc.OpenClipEncoder) -> None:
    # Fresh images (other noise, other sizes than the builder used), queried by caption.
    images, labels = _class_images(5, seed=7)
    image_vectors = encoder.embed(images)
    for k, caption in enumerate(TINY_CLIP_CAPTIONS):
        scores = image_vectors @ encoder.embed_text([caption])[0]
        top5 = np.argsort(-scores)[:5]
        assert (labels[top5] == k).all(), (caption, labels[top5])


def test_batched_equals_single(encoder: oc.OpenClipEncoder) -> None:
    images, _ = _class_images(9, seed=3)  # 36 images: more than one batch of 32
    together = encoder.embed(images)
    rows = [0, 17, 35]
    singles = np.vstack([encoder.embed([images[i]]) for i in rows])
    # Batch and single passes take different oneDNN/BLAS kernels (1.1e-4 apart per element on an Intel
    # Xeon): compare what search sees, the cosine and the neighbours found in the batch.
    assert_embeddings_agree(together[rows], singles, library=together)


def test_version_names_ref_and_weights(encoder: oc.OpenClipEncoder, tiny_clip: Path) -> None:
    weights = tiny_clip / "open_clip_model.safetensors"
    assert encoder.version == f"local-dir:{tiny_clip}@{file_fingerprint(weights)}"
    assert encoder.version.endswith(f"-{weights.stat().st_size}")


def test_rejects_non_2d_input(encoder: oc.OpenClipEncoder) -> None:
    with pytest.raises(ConfigError, match="2-D"):
        encoder.embed([np.zeros((8, 8, 3), dtype=np.float32)])


def test_openclip_from_environment(tiny_clip: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendUnavailableError, match=oc.OPENCLIP_ENV):
        build_encoder("openclip", settings)
    monkeypatch.setenv(oc.OPENCLIP_ENV, f"local-dir:{tiny_clip}")
    enc = build_encoder("openclip", settings)
    assert isinstance(enc, oc.OpenClipEncoder) and enc.name == "openclip"
    monkeypatch.setenv(oc.OPENCLIP_ENV, "ViT-B-32")
    with pytest.raises(ConfigError, match="hf-hub:ORG/REPO"):
        build_encoder("openclip", settings)
    monkeypatch.setenv(oc.OPENCLIP_ENV, "hf-hub:someone/absent")
    with pytest.raises(BackendUnavailableError, match="not on this machine"):
        build_encoder("openclip", settings)


def test_biomedclip_missing_says_what_to_run(settings: Settings) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        build_encoder("biomedclip", settings)
    message = str(info.value)
    assert "\n" not in message and "medrag models pull biomedclip" in message
    assert "medrag models import biomedclip PATH" in message


def test_biomedclip_from_hf_cache(tiny_clip: Path, settings: Settings, isolated: Path) -> None:
    snapshot = make_hf_cache_entry(isolated, BIOMEDCLIP_REPO, tiny_clip)
    enc = build_encoder("biomedclip", settings)
    assert isinstance(enc, oc.OpenClipEncoder) and enc.name == "biomedclip" and enc.model_dir == snapshot
    assert enc.version.startswith(f"hf-hub:{BIOMEDCLIP_REPO}@")
    direct = oc.openclip_encoder(f"hf-hub:{BIOMEDCLIP_REPO}", settings)
    images, _ = _class_images(1, seed=2)
    np.testing.assert_allclose(enc.embed(images), direct.embed(images), atol=1e-6)


def test_biomedclip_imported(tiny_clip: Path, settings: Settings) -> None:
    status = import_model("biomedclip", tiny_clip, settings)
    assert status.ready
    enc = build_encoder("biomedclip", settings)
    assert enc.model_dir == settings.models_dir / "hf" / "biomedclip"  # type: ignore[attr-defined]


def test_openclip_model_and_device_from_settings(
    tiny_clip: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings.openclip_model names the model (MEDRAG_OPENCLIP_MODEL through load_settings); device follows
    Settings."""
    from medrag.config import load_settings

    monkeypatch.delenv(oc.OPENCLIP_ENV, raising=False)
    chosen = settings.with_overrides(openclip_model=f"local-dir:{tiny_clip}", device="cpu")
    enc = build_encoder("openclip", chosen)
    assert isinstance(enc, oc.OpenClipEncoder) and enc.model_ref == f"local-dir:{tiny_clip}" and enc.device == "cpu"
    monkeypatch.setenv(oc.OPENCLIP_ENV, f"local-dir:{tiny_clip}")
    monkeypatch.setenv("MEDRAG_DEVICE", "CPU")
    loaded = load_settings(data_dir=settings.data_dir)
    assert loaded.openclip_model == f"local-dir:{tiny_clip}" and loaded.device == "cpu" and loaded.torch_device == "cpu"
