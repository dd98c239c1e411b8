"""Experiment 6: the classic encoder on the synthetic phantoms (medrag.phantoms), vs raw thumbnails.

Each phantom is its own patient; relevant = same label (normal, single findings, pairs).
Run: .venv/bin/python bench/encoder_experiments/exp06_phantoms.py [n]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PIL import Image

from medrag.encoders.classic import ClassicEncoder
from medrag.evaluation.retrieval import chance_precision, leave_one_patient_out
from medrag.phantoms import demo_mix, generate_phantom, label_for


def main(n: int = 240) -> None:
    t = time.perf_counter()
    mix = demo_mix(n, seed=0)
    images = [generate_phantom(f, 1000 + i, 256) for i, f in enumerate(mix)]
    # the library stores 8-bit PNGs: quantise as an ingest would
    images = [np.round(im * 255).astype(np.float32) / 255 for im in images]
    labels = [label_for(f) for f in mix]
    pids = [str(i) for i in range(n)]
    print(f"{n} phantoms in {time.perf_counter() - t:.1f} s; {len(set(labels))} labels; "
          f"chance {chance_precision(labels, pids):.3f}")
    thumbs = np.stack([np.asarray(Image.fromarray(im, mode="F").resize((32, 32), Image.BOX)).ravel()
                       for im in images])
    enc = ClassicEncoder()
    unfitted = enc.embed(images)
    enc.fit(images)
    fitted = enc.embed(images)
    for name, vecs in (("thumb32 centred", thumbs - thumbs.mean(0)), ("classic unfitted", unfitted),
                       ("classic fitted", fitted)):
        v = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        rep = leave_one_patient_out(v, labels, pids)
        s = rep.overall
        print(f"{name:<18} P@1 {s.precision[1]:.3f}  P@5 {s.precision[5]:.3f}  P@10 {s.precision[10]:.3f}  "
              f"mAP@10 {s.map_at[10]:.3f}")
    print(rep.to_table())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 240)
