"""Child process for the crash test: edits a memory forever, acknowledging each edit.

Usage: python _crash_writer.py MEMORY_DIR SEED

Before each edit it prints ``TRY`` and the edit; after the call has returned (the edit
is acknowledged) it prints ``ADD name``, ``UPD name info`` or ``DEL name``, each
flushed. The parent kills it with SIGKILL.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from rap_edge.memory import Memory
from rap_edge.memory._index import new_index
from rap_edge.memory._validate import check_image_bytes


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    live: list[str] = []
    with Memory(path) as mem:
        # Load what the first edit would import lazily (image checks, tqdm, USearch), so the
        # kills land among edits rather than among imports on a busy machine.
        ok, buf = cv2.imencode(".png", np.zeros((16, 16, 3), dtype=np.uint8))
        check_image_bytes(buf.tobytes(), source="warm-up")
        new_index(dim=4, dtype="f16")
        import tqdm  # noqa: F401

        print("READY", flush=True)
        i = 0
        while True:
            i += 1
            roll = rng.random()
            if roll < 0.6 or not live:
                name = f"s{seed}_{i}"
                ok, buf = cv2.imencode(".png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
                assert ok
                vecs = rng.standard_normal((1, 64)).astype(np.float32)
                print(f"TRY ADD {name}", flush=True)
                mem.add(name, images=[buf.tobytes()], vectors=vecs, encoder="e", info="v0")
                live.append(name)
                print(f"ADD {name}", flush=True)
            elif roll < 0.8:
                name = live[int(rng.integers(len(live)))]
                info = f"v{i}"
                print(f"TRY UPD {name} {info}", flush=True)
                mem.update(name, info=info)
                print(f"UPD {name} {info}", flush=True)
            else:
                name = live.pop(int(rng.integers(len(live))))
                print(f"TRY DEL {name}", flush=True)
                mem.remove(name)
                print(f"DEL {name}", flush=True)


if __name__ == "__main__":
    main()
