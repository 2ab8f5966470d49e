"""Time pymdbn.data.make_phantoms.

Usage: ``python bench/bench_phantoms.py [--n N] [--size S] [--repeat R] [--threads T]
[--resize SIDE] [--reference] [--preview PNG]``

Prints the wall-clock seconds (median of ``--repeat`` runs) and one JSON line with the
configuration, so results can be collected by scripts. ``--reference`` also times the
pre-vectorisation implementation kept in a source checkout's
``tests/_phantoms_reference.py``, alternating with the current one, and reports the
speed-up and whether both gave identical arrays. ``--threads`` sets pymdbn's threads
(chunks of patients are generated on them); ``--resize SIDE`` also times
``Phantoms.resized(SIDE)``, as ``pymdbn demo`` resizes its 64x64 phantoms to 32x32. ``--preview`` also writes a grid of the
first four patients (rows) by modality (columns) with lesion contours in red.
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from pymdbn.data.phantoms import MODALITIES, make_phantoms

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests",
                         "_phantoms_reference.py")


def load_reference():
    """``make_phantoms`` of the reference twin; only a source checkout has it."""
    if not os.path.isfile(REFERENCE):
        raise SystemExit(f"--reference needs a source checkout: {os.path.normpath(REFERENCE)} "
                         "does not exist")
    spec = importlib.util.spec_from_file_location("_phantoms_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module.make_phantoms


def identical(a, b):
    """Whether two results hold the same arrays, bit for bit."""
    if not np.array_equal(a.y, b.y):
        return False
    for field in ("X", "masks", "lesion_labels", "organ_masks"):
        x, y = getattr(a, field), getattr(b, field)
        if list(x) != list(y):
            return False
        for m in x:
            if x[m].dtype != y[m].dtype or x[m].tobytes() != y[m].tobytes():
                return False
    return True


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
    parser.add_argument("--repeat", type=int, default=1, help="timed runs (median reported)")
    parser.add_argument("--reference", action="store_true",
                        help="also time the reference twin (source checkout only)")
    parser.add_argument("--threads", type=int, help="pymdbn's threads (default: its own)")
    parser.add_argument("--resize", type=int, help="also time .resized(RESIZE)")
    parser.add_argument("--preview", help="also save a preview PNG here")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads is not None:
        import pymdbn

        pymdbn.set_num_threads(args.threads)

    versions = {"current": make_phantoms}
    if args.reference:
        versions["reference"] = load_reference()
    seconds = {name: [] for name in versions}
    resize_seconds = []
    results = {}
    # Alternating runs share whatever else loads the machine.
    for _ in range(args.repeat):
        for name, make in versions.items():
            start = time.perf_counter()
            results[name] = make(args.n, size=args.size, modalities=MODALITIES,
                                 random_state=args.seed)
            seconds[name].append(time.perf_counter() - start)
            if args.resize and name == "current":
                start = time.perf_counter()
                results[name].resized(args.resize)
                resize_seconds.append(time.perf_counter() - start)
    median = {name: statistics.median(times) for name, times in seconds.items()}

    import pymdbn

    threads = pymdbn.get_num_threads()["openmp"]
    print(f"make_phantoms({args.n}, size={args.size}) x {len(MODALITIES)} modalities, "
          f"{threads} threads: {median['current']:.2f} s")
    if resize_seconds:
        print(f".resized({args.resize}): {statistics.median(resize_seconds):.2f} s")
    report = {
        "bench": "make_phantoms",
        "n_patients": args.n,
        "size": args.size,
        "modalities": len(MODALITIES),
        "seconds": round(median["current"], 3),
        "repeat": args.repeat,
        "threads": threads,
        **({"resize": args.resize,
            "resize_seconds": round(statistics.median(resize_seconds), 3)}
           if resize_seconds else {}),
        "runs": [round(t, 3) for t in seconds["current"]],
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if args.reference:
        same = identical(results["current"], results["reference"])
        print(f"reference: {median['reference']:.2f} s, speed-up "
              f"{median['reference'] / median['current']:.2f}x, identical arrays: {same}")
        report.update(reference_seconds=round(median["reference"], 3),
                      reference_runs=[round(t, 3) for t in seconds["reference"]],
                      speedup=round(median["reference"] / median["current"], 2),
                      identical=same)
    print(json.dumps(report))
    if args.preview:
        save_preview(results["current"], args.preview)


if __name__ == "__main__":
    main()
