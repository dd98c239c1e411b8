"""Property-based fuzzing (hypothesis, bounded): the labeler never raises and always returns every
finding with a valid status; the image loader turns any bytes into a MedRAGError or a valid CXRImage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import badinputs
from medrag.errors import MedRAGError
from medrag.records import FINDING_STATUSES, FINDINGS, CXRImage

_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")

# Text made of radiology words, negations, hedges, punctuation, and hostile characters.
_WORDS = st.sampled_from([
    "no", "not", "without", "possible", "likely", "cannot exclude", "resolved", "effusion", "pleural",
    "cardiomegaly", "pneumothorax", "consolidation", "opacity", "atelectasis", "edema", "nodule", "mass",
    "pneumonia", "fracture", "pacemaker", "emphysema", "normal", "IMPRESSION:", "FINDINGS:", "HISTORY:",
    "\n", ".", ",", ";", "?", "<script>", "\x00", "\u202e", "\u200b", "\ud800", "𝔢𝔣𝔣𝔲𝔰𝔦𝔬𝔫", "ﬁndings",
])
_RADIOLOGY_TEXT = st.lists(_WORDS, max_size=40).map(" ".join)


@pytest.fixture(scope="module")
def labeler():  # type: ignore[no-untyped-def]
    """medrag.labels.label_text, loaded once (the first call builds the medspaCy pipeline)."""
    from medrag.labels import label_text

    label_text("warm up")
    return label_text


def _check_summary(summary: object) -> None:
    findings = summary.findings  # type: ignore[attr-defined]
    assert set(findings) == set(FINDINGS), f"findings keys differ: {set(findings) ^ set(FINDINGS)}"
    assert set(findings.values()) <= set(FINDING_STATUSES)
    assert isinstance(summary.label, str) and summary.label.strip()  # type: ignore[attr-defined]


@_FAST
@given(text=st.text(max_size=400))
def test_label_text_any_unicode_gives_valid_findings(labeler, text: str) -> None:  # type: ignore[no-untyped-def]
    _check_summary(labeler(text))


@_FAST
@given(text=_RADIOLOGY_TEXT)
def test_label_text_radiology_word_soup_gives_valid_findings(labeler, text: str) -> None:  # type: ignore[no-untyped-def]
    _check_summary(labeler(text))


def test_label_text_huge_and_degenerate_inputs(labeler) -> None:  # type: ignore[no-untyped-def]
    for text in ("", " ", "\x00" * 1000, "effusion " * 60_000, "." * 100_000, "\u202e" * 5000):
        _check_summary(labeler(text))


def _check_image(data: bytes) -> None:
    from medrag.imaging import load_image

    try:
        image = load_image(data, name="fuzz")
    except MedRAGError as exc:
        assert str(exc).strip(), "a MedRAGError must carry a message"
        return
    assert isinstance(image, CXRImage)
    pixels = image.pixels
    assert pixels.ndim == 2 and pixels.dtype == np.float32
    assert np.isfinite(pixels).all()
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0
    assert len(image.pixel_hash) == 64 and len(image.file_hash) == 64


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(data=st.binary(max_size=2048))
def test_load_image_random_bytes(data: bytes) -> None:
    _check_image(data)


_SEEDS = {
    "png": badinputs.png_bytes(48, 1),
    "jpeg": badinputs.jpeg_bytes(48, 2),
    "dicom": badinputs.dicom_bytes(rows=40, cols=40),
}


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid PNG/JPEG/DICOM with bytes flipped, a slice cut out, or junk inserted."""
    data = bytearray(_SEEDS[draw(st.sampled_from(sorted(_SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(data=_mutated())
def test_load_image_mutated_valid_files(data: bytes) -> None:
    _check_image(data)


@_FAST
@given(width=st.integers(1, 70_000), height=st.integers(1, 70_000))
def test_load_image_any_declared_png_size(width: int, height: int) -> None:
    """A PNG header may claim any size: tiny and huge ones are refused before decoding."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 256)
    data = (b"\x89PNG\r\n\x1a\n" + badinputs._png_chunk(b"IHDR", ihdr) + badinputs._png_chunk(b"IDAT", idat)
            + badinputs._png_chunk(b"IEND", b""))
    _check_image(data)
