"""The MiniLM text encoder: offline vectors, and the small cache that spares a question its second embedding."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_checks import assert_embeddings_agree
from medrag.encoders.text import MiniLMTextEncoder


@pytest.fixture(scope="module")
def encoder() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


def test_single_texts_match_the_batch_and_are_unit_vectors(encoder: MiniLMTextEncoder) -> None:
    texts = ["right lower lobe pneumonia", "small left pleural effusion", "normal chest radiograph"]
    batch = encoder.embed_text(texts)
    singles = np.vstack([encoder.embed_text([t]) for t in texts])
    assert batch.shape == (3, 384) and singles.shape == (3, 384)
    # a batch is padded to its longest text and takes other BLAS kernels: compare what search sees
    assert_embeddings_agree(batch, singles)
    assert np.allclose(np.linalg.norm(singles, axis=1), 1.0, atol=1e-5)
    # related findings are closer than unrelated ones
    assert float(singles[0] @ singles[1]) > float(singles[0] @ encoder.embed_text(["stock market prices"])[0])


def test_a_repeated_question_is_served_from_the_cache(
    encoder: MiniLMTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = encoder.embed_text(["is there cardiomegaly?"])
    calls: list[int] = []
    original = encoder._encode
    monkeypatch.setattr(encoder, "_encode", lambda texts: calls.append(len(texts)) or original(texts))
    again = encoder.embed_text(["is there cardiomegaly?"])
    assert calls == [] and np.array_equal(first, again)
    again[0, :] = 0.0  # the caller's copy: mutating it must not change what the cache returns
    assert np.array_equal(encoder.embed_text(["is there cardiomegaly?"]), first)
    encoder.embed_text(["a question not seen before"])
    assert calls == [1]


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = MiniLMTextEncoder()
    monkeypatch.setattr(encoder, "cache_size", 3)
    for i in range(5):
        encoder.embed_text([f"question {i}"])
    assert list(encoder._recent) == ["question 2", "question 3", "question 4"]
