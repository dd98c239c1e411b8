"""VectorIndex: build / search / filter / add / remove / save / load / mismatch / corruption / kinds."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import medrag.index as index_module
import medrag.index_kinds as kinds_module
from medrag.errors import ConfigError, IndexMismatchError, InputError
from medrag.index import VectorIndex, choose_index_kind


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _random(n: int, dim: int = 16, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"case-{i}" for i in range(n)], _unit(rng.standard_normal((n, dim)))


def _clustered(
    n: int, dim: int, seed: int, clusters: int = 40, noise: float = 0.5, sample_seed: int | None = None
) -> np.ndarray:
    centres = np.random.default_rng(seed).standard_normal((clusters, dim))
    rng = np.random.default_rng([seed, sample_seed if sample_seed is not None else 0])
    return _unit(centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)))


def _exact(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    scores = vectors @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_returns_inner_products_best_first(kind: str) -> None:
    ids, vecs = _random(200)
    index = VectorIndex.build(ids, vecs, encoder_name="enc", encoder_version="v1", kind=kind)
    assert (len(index), index.dim, index.kind, index.ids) == (200, 16, kind, ids)
    hits = index.search(vecs[7], 5)[0]
    assert [cid for cid, _ in hits] == _exact(vecs, ids, vecs[7], 5)
    assert hits[0] == ("case-7", pytest.approx(1.0, abs=1e-5))
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    for cid, score in hits:
        assert score == pytest.approx(float(vecs[ids.index(cid)] @ vecs[7]), abs=1e-5)
    batch = index.search(vecs[:3], 4)
    assert len(batch) == 3 and all(len(row) == 4 for row in batch)
    assert len(index.search(vecs[0], 1000)[0]) == 200  # k beyond n gives everything


def test_search_rejects_bad_queries() -> None:
    ids, vecs = _random(20)
    index = VectorIndex.build(ids, vecs, encoder_name="enc", encoder_version="v1")
    with pytest.raises(InputError, match="shape"):
        index.search(np.ones(5, dtype=np.float32), 3)
    with pytest.raises(InputError, match="k must be"):
        index.search(vecs[0], 0)
    with pytest.raises(InputError, match="NaN"):
        index.search(np.full(16, np.nan, dtype=np.float32), 3)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_allowed_ids_filter_matches_exact_search_over_subset(kind: str) -> None:
    ids, vecs = _random(400, seed=1)
    index = VectorIndex.build(ids, vecs, encoder_name="enc", encoder_version="v1", kind=kind)
    allowed = {f"case-{i}" for i in range(0, 400, 37)} | {"not-in-index"}
    sub = [i for i, cid in enumerate(ids) if cid in allowed]
    for q in (0, 5, 123):
        hits = index.search(vecs[q], 5, allowed_ids=allowed)[0]
        assert [cid for cid, _ in hits] == _exact(vecs[sub], [ids[i] for i in sub], vecs[q], 5)
    assert index.search(vecs[0], 5, allowed_ids=set()) == [[]]
    assert index.search(vecs[:2], 5, allowed_ids={"nope"}) == [[], []]
    # a filter smaller than k returns every allowed id
    assert {cid for cid, _ in index.search(vecs[0], 10, allowed_ids={"case-1", "case-2"})[0]} == {
        "case-1",
        "case-2",
    }


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_add_is_incremental_and_duplicate_ids_replace(kind: str) -> None:
    ids, vecs = _random(100, seed=2)
    index = VectorIndex.build(ids[:60], vecs[:60], encoder_name="enc", encoder_version="v1", kind=kind)
    index.add(ids[60:], vecs[60:])
    assert len(index) == 100 and index.ids == ids
    assert index.search(vecs[80], 1)[0][0][0] == "case-80"
    # replacing case-3 with case-50's vector: both now match that query perfectly, count unchanged
    index.add(["case-3"], vecs[50:51])
    assert len(index) == 100 and index.ids[-1] == "case-3"
    top = {cid for cid, s in index.search(vecs[50], 2)[0] if s > 0.9999}
    assert top == {"case-3", "case-50"}
    assert index.search(vecs[3], 1)[0][0][0] != "case-3"
    with pytest.raises(InputError, match="twice"):
        index.add(["x", "x"], vecs[:2])
    with pytest.raises(InputError, match="ids but"):
        index.add(["x"], vecs[:2])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_remove(kind: str) -> None:
    ids, vecs = _random(120, seed=3)
    index = VectorIndex.build(ids, vecs, encoder_name="enc", encoder_version="v1", kind=kind)
    assert index.remove(["case-5", "case-6", "unknown"]) == 2
    assert len(index) == 118 and "case-5" not in index and "case-7" in index
    returned = {cid for row in index.search(vecs[:20], 10) for cid, _ in row}
    assert not returned & {"case-5", "case-6"}
    assert index.search(vecs[7], 1)[0][0][0] == "case-7"
    assert index.remove([]) == 0
    index.add(["case-5"], vecs[5:6])  # a removed id can come back
    assert index.search(vecs[5], 1)[0][0][0] == "case-5"


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_roundtrip(tmp_path: Path, kind: str) -> None:
    ids, vecs = _random(150, seed=4)
    index = VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1", kind=kind)
    index.remove(["case-10"])
    faiss_path, json_path = index.save(tmp_path)
    assert (faiss_path.name, json_path.name) == ("classic.faiss", "classic.json")
    stamp = json.loads(json_path.read_text())
    assert stamp["encoder_name"] == "classic" and stamp["encoder_version"] == "v1"
    assert (stamp["dim"], stamp["kind"], stamp["count"]) == (16, kind, 149)
    assert stamp["ids"] == index.ids and stamp["created_at"]
    loaded = VectorIndex.load(tmp_path, "classic", "v1")
    assert (loaded.ids, loaded.kind, loaded.dim, len(loaded)) == (index.ids, kind, 16, 149)
    assert loaded.search(vecs[:5], 5) == index.search(vecs[:5], 5)
    loaded.add(["new"], vecs[10:11])  # labels continue after a reload: no clash
    assert loaded.search(vecs[10], 1)[0][0][0] == "new"
    assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_another_encoder_version(tmp_path: Path) -> None:
    ids, vecs = _random(10)
    VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1").save(tmp_path)
    with pytest.raises(IndexMismatchError, match=r"classic v1.*classic v2.*medrag index --rebuild"):
        VectorIndex.load(tmp_path, "classic", "v2")


def test_load_missing_files(tmp_path: Path) -> None:
    with pytest.raises(IndexMismatchError, match="no saved"):
        VectorIndex.load(tmp_path, "classic", "v1")
    ids, vecs = _random(10)
    faiss_path, json_path = VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1").save(tmp_path)
    faiss_path.unlink()
    with pytest.raises(IndexMismatchError, match="no saved"):
        VectorIndex.load(tmp_path, "classic", "v1")


def test_load_detects_corruption_and_disagreement(tmp_path: Path) -> None:
    ids, vecs = _random(30)
    index = VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1")
    faiss_path, json_path = index.save(tmp_path)
    good_faiss, good_json = faiss_path.read_bytes(), json_path.read_text()

    faiss_path.write_bytes(good_faiss[: len(good_faiss) // 2])  # truncated .faiss
    with pytest.raises(IndexMismatchError, match="rebuild"):
        VectorIndex.load(tmp_path, "classic", "v1")

    faiss_path.write_bytes(good_faiss)
    json_path.write_text("{not json")
    with pytest.raises(IndexMismatchError, match="unreadable"):
        VectorIndex.load(tmp_path, "classic", "v1")

    stamp = json.loads(good_json)
    stamp["count"] = 29
    json_path.write_text(json.dumps(stamp))
    with pytest.raises(IndexMismatchError, match="inconsistent"):
        VectorIndex.load(tmp_path, "classic", "v1")

    # a .faiss with the right checksum but other vectors than the stamp lists
    stamp = json.loads(good_json)
    stamp["labels"] = [label + 1000 for label in stamp["labels"]]
    json_path.write_text(json.dumps(stamp))
    with pytest.raises(IndexMismatchError, match="different vectors"):
        VectorIndex.load(tmp_path, "classic", "v1")


def test_crash_between_the_two_replaces_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, vecs = _random(40)
    VectorIndex.build(ids[:30], vecs[:30], encoder_name="classic", encoder_version="v1").save(tmp_path)
    newer = VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1")

    def crash(path: Path, data: bytes, **_: object) -> None:
        raise KeyboardInterrupt("power cut before the stamp was written")

    monkeypatch.setattr(index_module, "atomic_write", crash)
    with pytest.raises(KeyboardInterrupt):
        newer.save(tmp_path)
    monkeypatch.undo()
    # new .faiss beside the old .json: refused, never silently mixed
    with pytest.raises(IndexMismatchError, match="does not match"):
        VectorIndex.load(tmp_path, "classic", "v1")
    newer.save(tmp_path)
    assert len(VectorIndex.load(tmp_path, "classic", "v1")) == 40


def test_crash_while_writing_faiss_keeps_old_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, vecs = _random(40)
    VectorIndex.build(ids[:30], vecs[:30], encoder_name="classic", encoder_version="v1").save(tmp_path)
    newer = VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1")

    real_write_index = index_module.faiss.write_index

    def half_write(index: object, writer: object) -> None:
        real_write_index(index, writer)  # the bytes reach the temp file, then the disk fills
        raise OSError("disk full")

    monkeypatch.setattr(index_module.faiss, "write_index", half_write)
    with pytest.raises(OSError):
        newer.save(tmp_path)
    monkeypatch.undo()
    assert not list(tmp_path.glob("*.tmp"))  # the temp file is cleaned up
    assert len(VectorIndex.load(tmp_path, "classic", "v1")) == 30  # the old consistent pair


def test_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    ids, vecs = _random(12)
    VectorIndex.build(ids, vecs, encoder_name="classic", encoder_version="v1").save(tmp_path)
    (tmp_path / ".classic.faiss.abc123.tmp").write_bytes(b"junk from a killed process")
    assert len(VectorIndex.load(tmp_path, "classic", "v1")) == 12


def test_hnsw_recall_against_flat_on_clustered_vectors() -> None:
    # Embeddings have most variance in few directions (classic: 61% in 16 PCs); i.i.d. noise in all 48
    # dimensions at 0.5 is a harder, unrealistic case (recall 0.94), so the test uses 0.3.
    dim, n = 48, 4000
    vecs = _clustered(n, dim, seed=7, noise=0.3)
    queries = _clustered(100, dim, seed=7, noise=0.3, sample_seed=8)  # same clusters, new points
    ids = [str(i) for i in range(n)]
    flat = VectorIndex.build(ids, vecs, encoder_name="e", encoder_version="1", kind="flat")
    hnsw = VectorIndex.build(ids, vecs, encoder_name="e", encoder_version="1", kind="hnsw")
    truth = flat.search(queries, 10)
    got = hnsw.search(queries, 10)
    recall = np.mean([len({c for c, _ in a} & {c for c, _ in b}) / 10 for a, b in zip(truth, got, strict=True)])
    assert recall >= 0.95


def test_hnsw_tight_filter_still_exact() -> None:
    vecs = _clustered(3000, 32, seed=9)
    ids = [str(i) for i in range(3000)]
    hnsw = VectorIndex.build(ids, vecs, encoder_name="e", encoder_version="1", kind="hnsw")
    allowed = {str(i) for i in range(0, 3000, 97)}  # 31 ids scattered over every cluster
    sub = sorted(int(i) for i in allowed)
    for q in range(5):
        hits = hnsw.search(vecs[q], 10, allowed_ids=allowed)[0]
        assert [c for c, _ in hits] == _exact(vecs[sub], [str(i) for i in sub], vecs[q], 10)


@pytest.mark.parametrize(("kind", "min_recall"), [("ivfpq", 0.2), ("ivfsq8", 0.8)])
def test_ivf_kinds_build_search_filter_and_persist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, min_recall: float
) -> None:
    # Training on the recommended 10k+ vectors takes seconds; 3,000 exercise the same code paths.
    monkeypatch.setattr(kinds_module, "IVFPQ_MIN_TRAIN", 2_000)
    dim, n = 30, 3_000  # 30 is padded to 32 (PQ: 4 sub-vectors of 8; SQ8: the SIMD path)
    vecs = _clustered(n, dim, seed=11, clusters=30, noise=0.3)
    ids = [f"c{i}" for i in range(n)]
    index = VectorIndex.build(ids, vecs, encoder_name="big", encoder_version="1", kind=kind)
    assert index.kind == kind and index.dim == dim
    flat = VectorIndex.build(ids, vecs, encoder_name="big", encoder_version="1", kind="flat")
    queries = _clustered(50, dim, seed=11, clusters=30, noise=0.3, sample_seed=1)
    recall = np.mean([
        len({c for c, _ in a} & {c for c, _ in b}) / 10
        for a, b in zip(flat.search(queries, 10), index.search(queries, 10), strict=True)
    ])
    # PQ keeps 4 bytes a vector: lossy (0.31 here) but 60x chance (10 / 3,000); SQ8 keeps 1 byte a dim.
    assert recall >= min_recall
    allowed = {f"c{i}" for i in range(0, n, 150)}
    assert {c for c, _ in index.search(vecs[0], 30, allowed_ids=allowed)[0]} == allowed
    index.remove(["c0"])
    index.add(["late"], vecs[:1])
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, "big", "1")
    assert len(loaded) == n and "c0" not in loaded and "late" in loaded
    assert loaded.search(queries[:3], 5) == index.search(queries[:3], 5)


def test_ivfpq_needs_enough_training_vectors() -> None:
    ids, vecs = _random(500)
    with pytest.raises(ConfigError, match="ivfpq"):
        VectorIndex.build(ids, vecs, encoder_name="e", encoder_version="1", kind="ivfpq")
    with pytest.raises(ConfigError, match="unknown"):
        VectorIndex.build(ids, vecs, encoder_name="e", encoder_version="1", kind="annoy")


def test_build_validates_inputs() -> None:
    ids, vecs = _random(5)
    with pytest.raises(InputError, match="ids but"):
        VectorIndex.build(ids[:4], vecs, encoder_name="e", encoder_version="1")
    with pytest.raises(InputError, match="twice"):
        VectorIndex.build(["a", "a", "b", "c", "d"], vecs, encoder_name="e", encoder_version="1")
    empty = VectorIndex.build([], np.zeros((0, 8), np.float32), encoder_name="e", encoder_version="1")
    assert len(empty) == 0 and empty.search(np.ones(8, np.float32), 3) == [[]]


def test_choose_index_kind() -> None:
    assert choose_index_kind(1_000, 512) == "flat"
    assert choose_index_kind(index_module.FLAT_MAX, 512) == "flat"
    assert choose_index_kind(index_module.FLAT_MAX + 1, 512) == "hnsw"
    assert choose_index_kind(2 * index_module.FLAT_MAX, 256) == "flat"  # cost scales with n × dim
    assert choose_index_kind(index_module.HNSW_MAX, 274) == "hnsw"
    assert choose_index_kind(1_000_000, 274) == "ivfsq8"  # float32 HNSW at 1M is over the 1 GB budget
    with pytest.raises(InputError):
        choose_index_kind(10, 0)
    ids, vecs = _random(50)
    assert VectorIndex.build(ids, vecs, encoder_name="e", encoder_version="1").kind == "flat"


def test_concurrent_search_and_add() -> None:
    ids, vecs = _random(300, seed=12)
    index = VectorIndex.build(ids[:100], vecs[:100], encoder_name="e", encoder_version="1")
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for i in range(200):
                hits = index.search(vecs[i % 100], 3)[0]
                assert hits[0][0] == ids[i % 100]
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(100, 300, 20):
        index.add(ids[start : start + 20], vecs[start : start + 20])
    for t in threads:
        t.join()
    assert not errors and len(index) == 300
