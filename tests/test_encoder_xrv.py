"""The xrv encoder: torchxrayvision preprocessing and DenseNet features from an imported weights file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_checks import assert_embeddings_agree
from medrag.config import Settings
from medrag.encoders import ImageEncoder, build_encoder, get_encoder_spec
from medrag.encoders import xrv as xe
from medrag.errors import BackendUnavailableError, ConfigError
from medrag.weights import file_fingerprint, import_model, xrv_weights_path
from tiny_models import build_tiny_xrv


@pytest.fixture(scope="module")
def tiny_xrv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_xrv(tmp_path_factory.mktemp("tiny") / "densenet.pt")


@pytest.fixture(autouse=True)
def xrv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "xrv-cache"
    monkeypatch.setenv("MEDRAG_XRV_CACHE", str(cache))
    monkeypatch.setenv("MEDRAG_DEVICE", "cpu")
    return cache


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_registered() -> None:
    spec = get_encoder_spec("xrv")
    assert spec.kind == "image" and not spec.weight_free


def test_preprocess_scale_crop_resize() -> None:
    ones = xe.preprocess(np.ones((300, 200), dtype=np.float32))
    assert ones.shape == (1, 224, 224) and ones.dtype == np.float32
    np.testing.assert_allclose(ones, 1024.0, atol=1e-3)
    np.testing.assert_allclose(xe.preprocess(np.zeros((50, 60), dtype=np.float32)), -1024.0, atol=1e-3)
    # Wide image, bright side margins: the centre crop keeps only the dark middle square.
    wide = np.zeros((200, 300), dtype=np.float32)
    wide[:, :50] = 1.0
    wide[:, 250:] = 1.0
    np.testing.assert_allclose(xe.preprocess(wide), -1024.0, atol=1e-3)
    # Tall image, bright top half of the crop: orientation survives.
    tall = np.zeros((400, 200), dtype=np.float32)
    tall[100:200] = 1.0
    out = xe.preprocess(tall)[0]
    assert out[:100].mean() > 1000 and out[130:].mean() < -1000
    # Out-of-range and NaN pixels are clipped, as [0, 1] input is the contract.
    clipped = xe.preprocess(np.full((10, 10), np.nan, dtype=np.float32))
    np.testing.assert_allclose(clipped, -1024.0, atol=1e-3)
    with pytest.raises(ConfigError, match="2-D"):
        xe.preprocess(np.zeros((4, 4, 3), dtype=np.float32))


def test_missing_weights_say_what_to_run(settings: Settings) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        build_encoder("xrv", settings)
    message = str(info.value)
    assert "\n" not in message and "medrag models pull xrv-densenet121-all" in message
    assert "medrag models import xrv-densenet121-all PATH" in message


def test_corrupt_weights_file(settings: Settings) -> None:
    path = xrv_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a model")
    with pytest.raises(BackendUnavailableError, match="does not load as torchxrayvision weights"):
        build_encoder("xrv", settings)


@pytest.fixture(scope="module")
def imported_encoder(tmp_path_factory: pytest.TempPathFactory, tiny_xrv_file: Path) -> xe.XRVEncoder:
    """The tiny DenseNet imported through import_model into its own xrv cache, then built by the registry."""
    root = tmp_path_factory.mktemp("imported")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDRAG_XRV_CACHE", str(root / "xrv-cache"))
        mp.setenv("MEDRAG_DEVICE", "cpu")
        settings = Settings(data_dir=root / "data")
        status = import_model("xrv-densenet121-all", tiny_xrv_file, settings)
        assert status.ready and status.path == root / "xrv-cache" / status.path.name
        encoder = build_encoder("xrv", settings)
    assert isinstance(encoder, xe.XRVEncoder)
    return encoder


@pytest.mark.slow  # DenseNet121 forward passes at 224 px on CPU
def test_import_then_embed(imported_encoder: xe.XRVEncoder, tiny_xrv_file: Path) -> None:
    import torch

    encoder = imported_encoder
    assert isinstance(encoder, ImageEncoder) and encoder.name == "xrv" and encoder.dim == 1024
    assert encoder.version.endswith(file_fingerprint(tiny_xrv_file))
    rng = np.random.default_rng(0)
    images = [rng.random((260, 240), dtype=np.float32), rng.random((180, 200), dtype=np.float32)]
    vectors = encoder.embed(images)
    assert vectors.shape == (2, 1024) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    assert encoder.embed([]).shape == (0, 1024)
    # The vector is the pooled DenseNet feature before the classifier, computed here from the pickled model.
    reference = torch.load(tiny_xrv_file, weights_only=False).eval()
    with torch.no_grad():
        x = torch.from_numpy(xe.preprocess(images[1]))[None]
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.relu(reference.features(x)), 1).flatten(1)[0].numpy()
    # a batch of two and one image take different oneDNN convolution kernels: compare by cosine and ranking
    assert_embeddings_agree(pooled / np.linalg.norm(pooled), vectors[1], library=vectors)
