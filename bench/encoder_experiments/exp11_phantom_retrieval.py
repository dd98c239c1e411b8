"""Experiment 11: retrieval on the 240-case demo phantom library, and what it costs real films.

What a new user sees first: the demo library (``medrag.phantoms.build_demo_library``, 13 labels) indexed
with the default ``classic`` encoder fitted on it. For each phantom (leave-one-out; every phantom is its
own patient) the top 5 neighbours are scored three ways:

* ``exact``: same label (chance ≈ 0.12);
* ``share``: same label or at least one finding in common;
* ``normal``: both normal or both abnormal (normal-vs-abnormal agreement).

next to the headline real-film figure, nih normal vs pneumonia leave-one-patient-out P@10 (521 films,
``common.score``). "before" = phantoms.py and classic.py at ``--before`` (default: the commit this
work started from), loaded from git.

Modes (each prints markdown tables):

* ``main`` (default): phantoms old/new × encoder v2/v3, per-label P@5, library seeds 0 and 1;
* ``ablation``: old phantoms with one nuisance group of the anatomy held at mid-range (or shrunk);
* ``blocks``: candidate layout blocks alone and added to the texture blocks (new phantoms, nih);
* ``weights``: block weights of the shipped v3 features (new phantoms seeds 0/1, nih);
* ``real``: the exp05 real-film table (nih, kermany, all) for v2 and v3;
* ``speed``: raw-feature CPU time per 512-px nih image, v2 and v3 interleaved.

Run: .venv/bin/python bench/encoder_experiments/exp11_phantom_retrieval.py [mode ...]
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from skimage.feature import hog
from skimage.filters import threshold_otsu

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score, subset  # noqa: E402
from medrag import phantoms as new_phantoms  # noqa: E402
from medrag.encoders import classic as new_classic  # noqa: E402
from medrag.evaluation.retrieval import leave_one_patient_out  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BEFORE = "257c338"  # main before this experiment: phantoms and classic-v2 as first shipped
WORK = Path(tempfile.gettempdir()) / "medrag_exp11"
K = 5


# --------------------------------------------------------------------------- data


def module_at(commit: str, path: str, name: str) -> types.ModuleType:
    """``path`` as it was at ``commit``, imported as a fresh module (encoder registration stripped)."""
    source = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    source = source.split("\nregister_encoder(")[0]  # keep the registry pointing at today's encoder
    module = types.ModuleType(name)
    module.__file__ = f"{commit}:{path}"
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def demo_library(ph: types.ModuleType, seed: int, tag: str) -> tuple[list[np.ndarray], list[str], list[set[str]]]:
    """The demo library written by ``ph.build_demo_library`` and read back from its PNGs."""
    out = WORK / f"{tag}_seed{seed}"
    csv_path = ph.build_demo_library(out, n=240, seed=seed)
    df = pd.read_csv(csv_path)
    images = [np.asarray(Image.open(out / p).convert("L"), dtype=np.float32) / 255 for p in df["image"]]
    findings = [set(str(x).split("|")) - {"nan", ""} for x in df["findings"]]
    return images, list(df["label"]), findings


_NIH: tuple[list[np.ndarray], list[dict[str, str]]] | None = None


def nih() -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """The headline set: nih normal vs pneumonia (521 films)."""
    global _NIH
    if _NIH is None:
        images, rows = load_all()
        _NIH = subset(images, rows, "nih")
    return _NIH


# --------------------------------------------------------------------------- scoring


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def phantom_scores(vectors: np.ndarray, labels: Sequence[str], findings: Sequence[set[str]]) -> dict[str, Any]:
    """Top-K (leave-one-out) exact / share / normal-agreement, per-label exact, and P@10."""
    v = unit(vectors)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :K]
    lab = np.asarray(labels)
    exact = lab[top] == lab[:, None]
    share = np.array([[exact[i, r] or bool(findings[i] & findings[j]) for r, j in enumerate(row)]
                      for i, row in enumerate(top)])
    normal = (lab[top] == "normal") == (lab[:, None] == "normal")
    p10 = leave_one_patient_out(v.astype(np.float32), list(labels), [str(i) for i in range(len(lab))])
    return {
        "exact": float(exact.mean()),
        "share": float(share.mean()),
        "normal": float(normal.mean()),
        "p10": p10.overall.precision[10],
        "per_label": {str(name): float(exact[lab == name].mean()) for name in sorted(set(labels))},
    }


def nih_p10(vectors: np.ndarray) -> float:
    return score(vectors, nih()[1]).overall.precision[10]


def embed_fitted(classic: types.ModuleType, images: list[np.ndarray]) -> np.ndarray:
    """Fit the encoder on the set itself (as ``medrag index`` does) and embed it."""
    encoder = classic.ClassicEncoder()
    feats = encoder.features(images)
    encoder.fit_features(feats)
    return encoder.project(feats)


def split_blocks(classic: types.ModuleType, feats: np.ndarray) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, length, _ in classic.BLOCKS:
        out[name] = feats[:, start:start + length]
        start += length
    return out


def mix(blocks: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Centre each block on the set mean, L2-normalise, weight, concatenate (the encoder's projection)."""
    parts = [w * unit(blocks[k] - blocks[k].mean(axis=0)) for k, w in weights.items() if w]
    return unit(np.concatenate(parts, axis=1))


def fmt(s: dict[str, Any]) -> str:
    return f"{s['exact']:.3f} | {s['share']:.3f} | {s['normal']:.3f} | {s['p10']:.3f}"


# --------------------------------------------------------------------------- modes


def run_main(before: str) -> None:
    old_ph = module_at(before, "medrag/phantoms.py", "phantoms_before")
    old_enc = module_at(before, "medrag/encoders/classic.py", "classic_before")
    encoders = {"v2 (before)": old_enc, "v3": new_classic}
    nih_scores = {name: nih_p10(embed_fitted(enc, nih()[0])) for name, enc in encoders.items()}
    print("\n| phantoms | encoder | seed | exact P@5 | share P@5 | normal agree | P@10 | nih P@10 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    per_label: dict[str, dict[str, float]] = {}
    for (ph_name, ph), (enc_name, enc), seed in itertools.product(
        (("before", old_ph), ("new", new_phantoms)), encoders.items(), (0, 1)
    ):
        images, labels, findings = demo_library(ph, seed, "before" if ph is old_ph else "new")
        s = phantom_scores(embed_fitted(enc, images), labels, findings)
        if seed == 0:
            per_label[f"{ph_name} / {enc_name}"] = s["per_label"]
        print(f"| {ph_name} | {enc_name} | {seed} | {fmt(s)} | {nih_scores[enc_name]:.3f} |", flush=True)
    names = list(next(iter(per_label.values())))
    print("\nPer-label exact P@5, library seed 0\n")
    print("| label | " + " | ".join(per_label) + " |")
    print("|---|" + "---:|" * len(per_label))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{v[name]:.2f}" for v in per_label.values()) + " |")


def run_ablation(before: str) -> None:
    """Which nuisance of the original phantoms swamps the findings (original encoder v2)."""
    old_ph = module_at(before, "medrag/phantoms.py", "phantoms_before")
    old_enc = module_at(before, "medrag/encoders/classic.py", "classic_before")
    mid = dict(cx=0.5, top=0.12, half_width=0.36, height=0.64, angle=0.0, ctr=0.44, dome_r=0.75, dome_l=0.8,
               gamma=1.0, brightness=0.0, noise=0.011, soft=0.95, rib_phase=0.0, rib_gap=0.0925)
    geometry, exposure = ["cx", "top", "half_width", "height", "angle"], ["gamma", "brightness", "soft"]
    groups: list[tuple[str, list[str], float]] = [
        ("none (original)", [], 1.0), ("rotation", ["angle"], 0.0), ("position", ["cx", "top"], 0.0),
        ("size", ["half_width", "height"], 0.0), ("geometry (all 5)", geometry, 0.0),
        ("exposure (gamma, brightness, soft tissue)", exposure, 0.0), ("noise", ["noise"], 0.0),
        ("ribs", ["rib_phase", "rib_gap"], 0.0), ("heart size, domes", ["ctr", "dome_r", "dome_l"], 0.0),
        ("everything", list(mid), 0.0), ("geometry + exposure ranges × 0.35", geometry + exposure, 0.35),
    ]
    original = old_ph._anatomy
    print("\n| held at mid-range | exact P@5 | share | normal agree | P@10 |")
    print("|---|---:|---:|---:|---:|")
    for name, fields, s in groups:
        def anatomy(seed: int, fields: list[str] = fields, s: float = s) -> Any:
            a = original(seed)
            return dataclasses.replace(a, **{f: mid[f] + s * (getattr(a, f) - mid[f]) for f in fields})
        old_ph._anatomy = anatomy
        mixes = old_ph.demo_mix(240, 0)
        images = [np.round(old_ph.generate_phantom(f, i, 256) * 255).astype(np.float32) / 255
                  for i, f in enumerate(mixes)]
        labels = [old_ph.label_for(f) for f in mixes]
        sc = phantom_scores(embed_fitted(old_enc, images), labels, [set(f) for f in mixes])
        print(f"| {name} | {fmt(sc)} |", flush=True)
    old_ph._anatomy = original


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


def _rs(p: np.ndarray, h: int, w: int | None = None) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(p, np.float32), mode="F")
                      .resize((w or h, h), Image.Resampling.BOX), dtype=np.float32)


def _body_box(p: np.ndarray, frac: float = 0.2) -> tuple[int, int, int, int]:
    m = p > threshold_otsu(p)
    r, c = np.where(m.mean(1) > frac)[0], np.where(m.mean(0) > frac)[0]
    if len(r) < 8 or len(c) < 8:
        return 0, 0, p.shape[0], p.shape[1]
    return r[0], c[0], r[-1] + 1, c[-1] + 1


def _lung_box(p: np.ndarray) -> tuple[int, int, int, int]:
    r0, c0, r1, c1 = _body_box(p)
    q = p[r0:r1, c0:c1]
    m = q < threshold_otsu(q)
    r, c = np.where(m.mean(1) > 0.15)[0], np.where(m.mean(0) > 0.15)[0]
    if len(r) < 8 or len(c) < 8:
        return r0, c0, r1, c1
    return r0 + r[0], c0 + c[0], r0 + r[-1] + 1, c0 + c[-1] + 1


def candidate_blocks(probe: np.ndarray) -> dict[str, np.ndarray]:
    """Layout blocks tried on the 128-px thumbnail (skimage Otsu; the encoder has its own cheaper one)."""
    b = _body_box(probe)
    body = probe[b[0]:b[2], b[1]:b[3]]
    lb = _lung_box(probe)
    lungs = probe[lb[0]:lb[2], lb[1]:lb[3]]
    g12 = _z(_rs(body, 12))
    z48 = _z(_rs(body, 48))
    out = {f"grid{g} uncropped, z": _z(_rs(probe, g).ravel()) for g in (8, 16)}
    out["grid8 uncropped, raw"] = _rs(probe, 8).ravel()
    out.update({f"body grid{g}, z": _z(_rs(body, g).ravel()) for g in (3, 4, 5, 6, 7, 8, 12)})
    out["body grid8, raw"] = _rs(body, 8).ravel()
    out.update({f"lung grid{g}, z": _z(_rs(lungs, g).ravel()) for g in (6, 8)})
    out["body std6 (48 px)"] = z48.reshape(6, 8, 6, 8).std(axis=(1, 3)).ravel()
    out["body std4 (48 px)"] = z48.reshape(4, 12, 4, 12).std(axis=(1, 3)).ravel()
    out["body HOG 32 px, 8-px cells"] = hog(_rs(body, 32), 9, (8, 8), (2, 2))
    out["body HOG 64 px, 16-px cells"] = hog(_rs(body, 64), 9, (16, 16), (2, 2))
    out["lung HOG 64 px, 16-px cells"] = hog(_rs(lungs, 64), 9, (16, 16), (2, 2))
    out["body grid12 sorted per L/R half"] = np.concatenate([np.sort(g12[:, :6].ravel()), np.sort(g12[:, 6:].ravel())])
    return out


def _candidates(images: list[np.ndarray], classic: types.ModuleType) -> dict[str, np.ndarray]:
    probes = [classic._probe(classic._clean(classic._prepare(im))) for im in images]
    per = [candidate_blocks(p) for p in probes]
    blocks = {k: np.stack([d[k] for d in per]).astype(np.float32) for k in per[0]}
    old_enc = module_at(BEFORE, "medrag/encoders/classic.py", "classic_before")
    blocks.update(split_blocks(old_enc, old_enc.ClassicEncoder().features(images)))
    return blocks


def run_blocks() -> None:
    """Each candidate alone, and added (weight 1.5) to the v2 texture blocks (lbp 1 + 1, hist 0.5)."""
    images, labels, findings = demo_library(new_phantoms, 0, "new")
    ph = _candidates(images, new_classic)
    nb = _candidates(nih()[0], new_classic)
    texture = {"lbp_global": 1.0, "lbp_grid": 1.0, "hist": 0.5}
    print("\n| block | alone: exact P@5 | normal agree | nih P@10 | + texture: exact P@5 | normal agree | nih P@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ph:
        if name in ("lbp_global", "lbp_grid", "hist"):
            continue
        a = phantom_scores(mix(ph, {name: 1.0}), labels, findings)
        b = phantom_scores(mix(ph, {**texture, name: 1.5}), labels, findings)
        print(f"| {name} | {a['exact']:.3f} | {a['normal']:.3f} | {nih_p10(mix(nb, {name: 1.0})):.3f} "
              f"| {b['exact']:.3f} | {b['normal']:.3f} | {nih_p10(mix(nb, {**texture, name: 1.5})):.3f} |", flush=True)


def run_weights() -> None:
    """Weights of the shipped v3 blocks (features computed once)."""
    sets = []
    for seed in (0, 1):
        images, labels, findings = demo_library(new_phantoms, seed, "new")
        sets.append((split_blocks(new_classic, new_classic.ClassicEncoder().features(images)), labels, findings))
    nb = split_blocks(new_classic, new_classic.ClassicEncoder().features(nih()[0]))
    shipped = {name: w for name, _, w in new_classic.BLOCKS}
    grid: list[dict[str, float]] = [
        {},
        {"layout_mean": 0.0, "layout_std": 0.0},
        {"layout_std": 0.0},
        {"layout_mean": 0.0},
        {"layout_mean": 1.0},
        {"layout_mean": 1.25},
        {"layout_mean": 1.75},
        {"layout_mean": 2.0},
        {"layout_std": 0.75},
        {"layout_std": 1.25},
        {"layout_std": 1.5},
        {"layout_mean": 1.25, "layout_std": 1.25},
        {"layout_mean": 1.75, "layout_std": 1.25},
        {"layout_mean": 2.25, "layout_std": 1.5},
        {"hist": 0.0},
        {"hist": 1.0},
        {"lbp_global": 1.25},
        {"lbp_grid": 0.75},
    ]
    print("\n| change (others as shipped) | seed 0: exact | normal | seed 1: exact | normal | nih P@10 |")
    print("|---|---:|---:|---:|---:|---:|")
    for change in grid:
        w = {**shipped, **change}
        cells = [phantom_scores(mix(b, w), lab, f) for b, lab, f in sets]
        tag = ", ".join(f"{k} {v:g}" for k, v in change.items()) or "shipped"
        print(f"| {tag} | {cells[0]['exact']:.3f} | {cells[0]['normal']:.3f} | {cells[1]['exact']:.3f} "
              f"| {cells[1]['normal']:.3f} | {nih_p10(mix(nb, w)):.3f} |", flush=True)


def run_speed(before: str, passes: int = 7) -> None:
    """CPU time (one thread) per 512-px nih image, v2 and v3 interleaved so both see the same load."""
    import os
    import time

    old_enc = module_at(before, "medrag/encoders/classic.py", "classic_before")
    images = nih()[0][:200]
    best: dict[str, list[float]] = {"v2 (before)": [], "v3": []}
    for _ in range(passes):
        for name, enc in (("v2 (before)", old_enc), ("v3", new_classic)):
            start = time.process_time()
            for im in images:
                enc.raw_features(im)
            best[name].append((time.process_time() - start) * 1000 / len(images))
    print(f"\nload average {os.getloadavg()[0]:.1f}; ms per 512-px image, CPU time, best / median of {passes}")
    for name, times in best.items():
        print(f"{name}: {min(times):.2f} / {float(np.median(times)):.2f}")


def run_real(before: str) -> None:
    """The exp05 table for v2 and v3: real films, each set fitted on itself (nih also unfitted)."""
    old_enc = module_at(before, "medrag/encoders/classic.py", "classic_before")
    images, rows = load_all()
    sets = {
        "nih normal vs pneumonia": subset(images, rows, "nih"),
        "kermany normal vs pneumonia": subset(images, rows, "kermany"),
        "all 1,389 images, 3 labels": (images, rows),
    }
    print("\n| set | encoder | P@1 | P@5 | P@10 | mAP@10 | P@10 unfitted |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for set_name, (imgs, rws) in sets.items():
        for enc_name, enc in (("v2 (before)", old_enc), ("v3", new_classic)):
            encoder = enc.ClassicEncoder()
            feats = encoder.features(imgs)
            unfitted = score(encoder.project(feats), rws).overall.precision[10]
            encoder.fit_features(feats)
            o = score(encoder.project(feats), rws).overall
            print(f"| {set_name} | {enc_name} | {o.precision[1]:.3f} | {o.precision[5]:.3f} | {o.precision[10]:.3f} "
                  f"| {o.map_at[10]:.3f} | {unfitted:.3f} |", flush=True)


MODES: dict[str, Callable[[], None]] = {
    "real": lambda: run_real(BEFORE),
    "speed": lambda: run_speed(BEFORE),
    "main": lambda: run_main(BEFORE),
    "ablation": lambda: run_ablation(BEFORE),
    "blocks": run_blocks,
    "weights": run_weights,
}


if __name__ == "__main__":
    for mode in sys.argv[1:] or ["main"]:
        print(f"\n## {mode}", flush=True)
        MODES[mode]()
