"""The domain guard: text questions (lexicon alone and with MiniLM) and images (photos, pages, blanks,
extreme shapes, phantoms, real chest X-rays)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata
from skimage.color import rgb2gray

from medrag.guard import (
    CHECK_CHARS,
    IMAGE_REFUSAL,
    MAX_QUESTION_CHARS,
    TEXT_REFUSAL,
    check_image,
    check_text,
    image_cues,
    lexicon_hits,
)
from medrag.imaging import colourfulness
from medrag.records import CXRImage

# None of these were used to set the threshold (the development set is in the guard's notes).
ON_TOPIC = [
    "what is a rib fracture",
    "is this pneumothorax?",
    "Is the cardiac silhouette enlarged on this film?",
    "What does blunting of the left costophrenic angle mean?",
    "Could this right upper lobe opacity be tuberculosis?",
    "How do I tell a pleural effusion from pleural thickening?",
    "Is the endotracheal tube too low?",
    "What are the signs of a tension pneumothorax on a radiograph?",
    "Does this look like COVID pneumonia?",
    "Explain the findings: bibasilar atelectasis and small effusions",
    "What is the differential for a solitary pulmonary nodule?",
    "Why would both hila be enlarged?",
    "Is there free air under the diaphragm?",
    "Are the lungs hyperinflated like in emphysema?",
    "My chest hurts when I breathe after a fall, could a rib be broken?",
    "what does 'no acute cardiopulmonary process' mean in my report",
]
OFF_TOPIC = [
    "best pizza in Rome",
    "write python code",
    "Write a Python function that reverses a linked list",
    "How do I assemble a chest of drawers from IKEA?",
    "Who will win the Champions League this season?",
    "What is the exchange rate of the euro to the dollar?",
    "Suggest a vegetarian dinner recipe",
    "Tell me a joke about cats",
    "Plan a weekend in Barcelona",
    "What is the plot of Star Wars?",
    "Help me with my algebra homework: factor x^2 - 9",
    "Which smartphone has the best camera?",
    "How do I change a car tyre?",
    "Translate 'thank you' into Japanese",
    "What is the population of Canada?",
    "Where can I find the treasure chest in Minecraft?",
]


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    from medrag.encoders.text import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    encoder.embed_text(["warm up"])
    return encoder


@pytest.mark.parametrize("question", ON_TOPIC)
def test_on_topic_questions_are_allowed_with_minilm(minilm, question: str) -> None:  # type: ignore[no-untyped-def]
    verdict = check_text(question, minilm)
    assert verdict.allowed, (question, verdict)
    assert verdict.kind == "text" and 0.5 < verdict.score <= 1.0


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_are_refused_with_minilm(minilm, question: str) -> None:  # type: ignore[no-untyped-def]
    verdict = check_text(question, minilm)
    assert not verdict.allowed, (question, verdict)
    assert verdict.reason == TEXT_REFUSAL
    assert 0.0 <= verdict.score < 0.5


def test_lexicon_only_path_agrees_on_most_questions() -> None:
    on = sum(check_text(q).allowed for q in ON_TOPIC)
    off = sum(not check_text(q).allowed for q in OFF_TOPIC)
    # the lexicon alone is a weaker check: it misses questions without a medical word
    assert on >= len(ON_TOPIC) - 2 and off >= len(OFF_TOPIC) - 2, (on, off)
    assert check_text("is this pneumothorax?").allowed
    assert not check_text("best pizza in Rome").allowed
    assert not check_text("How do I assemble a chest of drawers?").allowed


def test_lexicon_counts_phrases_before_words() -> None:
    hits = lexicon_hits("Chest of drawers or chest X-ray?")
    assert (hits.strong, hits.offtopic) == (1, 1)
    assert lexicon_hits("pleural effusion").strong == 1  # the phrase, not two words


@pytest.mark.parametrize("question", ["", "   ", "\n\t", "\u200b\u200f", "\x00\x01"])
def test_empty_questions_are_refused(minilm, question: str) -> None:  # type: ignore[no-untyped-def]
    for verdict in (check_text(question), check_text(question, minilm)):
        assert not verdict.allowed and "empty" in verdict.reason and TEXT_REFUSAL in verdict.reason


def test_control_and_bidi_characters_do_not_break_the_check(minilm) -> None:  # type: ignore[no-untyped-def]
    verdict = check_text("\u202eis\u200b this\x00 a \x1b[31mpneumo\u200dthorax?\u202c", minilm)
    assert verdict.allowed
    assert not check_text("\u202ebest \x00pizza in Rome\u200f", minilm).allowed


def test_long_questions_are_truncated_and_absurd_ones_refused_fast(minilm) -> None:  # type: ignore[no-untyped-def]
    long_medical = "Is there a left pleural effusion on this chest X-ray? " * 200  # ~10,000 chars
    assert len(long_medical) > CHECK_CHARS
    assert check_text(long_medical, minilm).allowed
    started = time.perf_counter()
    verdict = check_text("pneumothorax " * 100_000, minilm)  # 1.3 MB
    assert not verdict.allowed and f"{MAX_QUESTION_CHARS:,}" in verdict.reason
    assert time.perf_counter() - started < 5.0


# ------------------------------------------------------------------------------------------ images


def _photo(name: str, with_meta: bool = True) -> CXRImage:
    rgb = getattr(skdata, name)()
    if rgb.ndim == 3:
        gray = rgb2gray(rgb[..., :3]).astype(np.float32)
        meta = {"colourfulness": colourfulness(rgb[..., :3]), "converted_from_rgb": True}
    else:
        gray = (rgb / 255.0).astype(np.float32)
        meta = {"colourfulness": 0.0, "converted_from_rgb": False}
    return CXRImage(pixels=gray, meta=meta if with_meta else {})


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera", "text", "page"])
def test_skimage_photos_and_pages_are_refused(name: str) -> None:
    verdict = check_image(_photo(name))
    assert not verdict.allowed and verdict.kind == "image"
    assert IMAGE_REFUSAL in verdict.reason


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera", "text", "page"])
def test_grey_photos_are_refused_without_colour_metadata(name: str) -> None:
    assert not check_image(_photo(name, with_meta=False)).allowed


def test_colour_is_the_reason_for_colour_photos() -> None:
    assert "colour" in check_image(_photo("coffee")).reason


def test_a_rendered_text_page_is_refused_as_a_document() -> None:
    page = Image.new("L", (400, 480), 255)
    draw = ImageDraw.Draw(page)
    for line in range(24):
        draw.text((20, 12 + 19 * line), "Patient consent form: please read and sign below.", fill=0)
    verdict = check_image(CXRImage(np.asarray(page, dtype=np.float32) / 255.0, {}))
    assert not verdict.allowed and "document" in verdict.reason


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_blank_images_are_refused(level: float) -> None:
    rng = np.random.default_rng(0)
    pixels = np.clip(level + rng.normal(0, 0.005, (256, 256)), 0, 1).astype(np.float32)
    verdict = check_image(CXRImage(pixels, {}))
    assert not verdict.allowed and "blank" in verdict.reason


@pytest.mark.parametrize("shape", [(100, 800), (900, 200), (20, 20), (1, 4000)])
def test_extreme_shapes_are_refused(shape: tuple[int, int]) -> None:
    assert not check_image(CXRImage(np.random.default_rng(1).random(shape, dtype=np.float32), {})).allowed


def test_malformed_pixels_do_not_crash() -> None:
    empty, rgb = np.zeros((0, 0), np.float32), np.zeros((10, 10, 3), np.float32)
    for pixels in (empty, rgb, np.full((300, 300), np.nan, np.float32)):
        verdict = check_image(CXRImage(pixels, {"colourfulness": "n/a"}))
        assert isinstance(verdict.allowed, bool) and not verdict.allowed


def test_synthetic_phantoms_pass() -> None:
    phantoms = pytest.importorskip("medrag.phantoms")
    for i, findings in enumerate(phantoms.demo_mix(12)):
        verdict = check_image(CXRImage(phantoms.generate_phantom(findings, i), {}))
        assert verdict.allowed, (findings, verdict)


def _real_rows(real_data: Path) -> list[dict[str, str]]:
    with open(real_data / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.realdata
def test_a_sample_of_real_cxrs_pass(real_data: Path) -> None:
    rows = _real_rows(real_data)[::50]
    for row in rows:
        pixels = np.asarray(Image.open(real_data / row["image"]).convert("L"), dtype=np.float32) / 255.0
        assert check_image(CXRImage(pixels, {"colourfulness": 0.0})).allowed, row["image"]


@pytest.mark.realdata
@pytest.mark.slow
def test_false_refusal_rate_on_all_real_cxrs_is_at_most_one_percent(real_data: Path) -> None:
    rows = _real_rows(real_data)
    refused = []
    for row in rows:
        pixels = np.asarray(Image.open(real_data / row["image"]).convert("L"), dtype=np.float32) / 255.0
        if not check_image(CXRImage(pixels, {"colourfulness": 0.0, "converted_from_rgb": False})).allowed:
            refused.append(row["image"])
    rate = len(refused) / len(rows)
    # measured: 1 of 1,389 (0.07%), an off-centre bedside film (hannover_262a70ca)
    assert len(rows) == 1389
    assert rate <= 0.01, refused


def test_cues_of_a_centred_symmetric_chest_layout() -> None:
    from medrag.guard_image import _chest_template

    cues = image_cues(_chest_template(256).astype(np.float32))
    assert cues.symmetry > 0.9 and cues.mediastinum > 0 and cues.template > 0.9 and not cues.weak()


def test_other_text_encoders_are_replaced_by_minilm(minilm) -> None:  # type: ignore[no-untyped-def]
    class Other:
        name, version, dim = "other-clip", "1", 4

        def embed_text(self, texts):  # type: ignore[no-untyped-def]
            raise AssertionError("the guard must not use an uncalibrated encoder")

    assert check_text("is this pneumothorax?", Other()).allowed  # type: ignore[arg-type]
    assert not check_text("best pizza in Rome", Other()).allowed  # type: ignore[arg-type]
