#!/usr/bin/env python3
"""Where a scene cut lies: thumbnail correlation of consecutive frames against unrelated photos.

The pipeline drops its tracks when two consecutive frames' 32x24 grey thumbnails correlate
below ``rap_edge.pipeline.SCENE_CUT``. This measures that correlation on video-like streams made
from the real check photos (``bench/pipeline.py``'s stream: faces moving a few pixels, with two
real cuts where the number of faces changes; a slow pan and zoom with lighting swings and sensor
noise; a face walking across a still background) and on consecutive pairs of unrelated photos
of a labelled set (clean photos and every condition, shuffled, resized to 640x480; and the far
condition, which is 640x480 already), and prints how many of each fall below candidate cuts.

Example:
    python bench/scene_cut.py --labelled /tmp/labelled
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np

from rap_edge.models import CHECK_PHOTOS, ModelStore
from rap_edge.pipeline import SCENE_CUT, scene_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.pipeline
from bench.pipeline import stream


def read(path: Path | str) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        msg = f"{path}: cannot read"
        raise SystemExit(msg)
    return np.asarray(img, np.uint8)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float((scene_signature(a) * scene_signature(b)).sum())


def pairs(frames: list[np.ndarray]) -> list[float]:
    return [corr(a, b) for a, b in itertools.pairwise(frames)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelled", required=True, help="a labelled folder (with conditions/)")
    parser.add_argument("--photos", type=int, default=600, help="unrelated photos to pair")
    args = parser.parse_args()
    store = ModelStore(None, carriers=[CHECK_PHOTOS])
    store.pull()
    photos = {
        f.name[:-4]: read(store.file(CHECK_PHOTOS.key, f.name))
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    }
    rng = np.random.default_rng(0)
    bench = pairs(stream(photos, 90))
    base = cv2.resize(photos["obama2"], (640, 480))
    pan = []
    for i in range(60):
        m = np.array([[1 + i * 0.003, 0, -i * 2], [0, 1 + i * 0.003, -i]], np.float32)
        w = cv2.warpAffine(base, m, (640, 480), borderMode=cv2.BORDER_REFLECT)
        f = np.asarray(w, np.float32) * (1 + 0.3 * np.sin(i / 5)) + rng.normal(0, 6, w.shape)
        pan.append(np.clip(f, 0, 255).astype(np.uint8))
    bg, face = cv2.resize(photos["biden"], (640, 480)), cv2.resize(photos["obama"], (160, 200))
    walk = []
    for i in range(50):
        f = bg.copy()
        x = 10 + 9 * i
        f[100:300, x : x + 160] = face[:, : min(160, 640 - x)]
        walk.append(f)
    root = Path(args.labelled)
    files = sorted(root.glob("*/*.jpg")) + sorted(root.glob("conditions/*/*/*.jpg"))
    files = [files[i] for i in rng.permutation(len(files))]
    unrelated = pairs([cv2.resize(read(p), (640, 480)) for p in files[: args.photos]])
    far = pairs([read(p) for p in sorted(root.glob("conditions/far/*/*.jpg"))])
    video_all = [*bench, *pairs(pan), *pairs(walk)]  # the bench stream has 2 real cuts
    rows = {
        "bench stream (2 real cuts)": bench,
        "pan, zoom, light, noise": pairs(pan),
        "walk-through": pairs(walk),
        "unrelated photos": unrelated,
        "far condition (640x480)": far,
    }
    print("| frames | pairs | min | 5th pct | median | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, v in rows.items():
        a = np.asarray(v)
        print(
            f"| {name} | {len(a)} | {a.min():.3f} | {np.percentile(a, 5):.3f} | "
            f"{np.median(a):.3f} | {a.max():.3f} |"
        )
    print("\n| cut below | video-like pairs cut | unrelated pairs cut | far pairs cut |")
    print("|---:|---:|---:|---:|")
    for t in sorted({0.5, 0.7, 0.8, SCENE_CUT, 0.9}):
        print(
            f"| {t:.2f}{' (default)' if t == SCENE_CUT else ''} | "
            f"{sum(x < t for x in video_all)}/{len(video_all)} | "
            f"{sum(x < t for x in unrelated)}/{len(unrelated)} | "
            f"{sum(x < t for x in far)}/{len(far)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
