"""Time pymdbn.data.make_phantoms.

Usage: ``python bench/bench_phantoms.py [--n N] [--size S] [--preview PNG]``

Prints the wall-clock seconds and one JSON line with the configuration, so
results can be collected by scripts. ``--preview`` also writes a grid of the
first four patients (rows) by modality (columns) with lesion contours in red.
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from pymdbn.data.phantoms import MODALITIES, make_phantoms


def save_preview(phantoms, path, n_rows=4, zoom=4):
    """Write a patients x modalities grid with lesion contours to ``path``."""
    from PIL import Image
    from scipy import ndimage

    rows = []
    for i in range(min(n_rows, len(phantoms.y))):
        tiles = []
        for m in phantoms.modalities:
            grey = (np.clip(phantoms.X[m][i], 0, 1) * 255).astype(np.uint8)
            rgb = np.repeat(grey[..., None], 3, axis=-1).repeat(zoom, 0).repeat(zoom, 1)
            mask = phantoms.masks[m][i].repeat(zoom, 0).repeat(zoom, 1)
            rgb[mask & ~ndimage.binary_erosion(mask)] = (255, 0, 0)
            tiles.append(np.pad(rgb, ((2, 2), (2, 2), (0, 0))))
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="number of patients")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview", help="also save a preview PNG here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    phantoms = make_phantoms(args.n, size=args.size, modalities=MODALITIES, random_state=args.seed)
    seconds = time.perf_counter() - start
    print(f"make_phantoms({args.n}, size={args.size}) x {len(MODALITIES)} modalities: {seconds:.2f} s")
    print(
        json.dumps(
            {
                "bench": "make_phantoms",
                "n_patients": args.n,
                "size": args.size,
                "modalities": len(MODALITIES),
                "seconds": round(seconds, 3),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
            }
        )
    )
    if args.preview:
        save_preview(phantoms, args.preview)


if __name__ == "__main__":
    main()
