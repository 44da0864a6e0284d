"""Memory of an RDM streamed from a netCDF layer larger than the memory budget.

Writes an activation file with one conv layer (n stimuli x channels x 20 x 20, float32,
uncompressed, chunked by batch as `ActivationWriter` does), then, in a fresh process, computes
the layer's correlation RDM with ``calc_rdm(layer_chunks(path, layer, chunk_size), ...)`` (and
with --decorrelation its decorrelation L / participation ratio with
``decorrelation(layer_chunks(...))``, two n x n Gram matrices: twice the work); the chunk size
is chosen so that one chunk's working copies (the float32 read and its shifted float32 copy)
fit the budget. Reports the peak resident memory (``resource.getrusage``, ru_maxrss) above the
baseline after imports, the peak of Python/numpy allocations (``tracemalloc``) and their ratio
to the layer's size in the file. Finally checks the streamed RDM on the first 200 stimuli
against rsatoolbox computed in memory (float64).

The work is n² x D multiply-adds whatever the chunking (2000 x 100,000 is 4e11: over a minute
on 2 busy cores), so the defaults keep the file at 800 MB with fewer stimuli: 1000 x 200,000
float32, budget 200 MB; about a minute on 2 cores.

    python benchmarks/bench_rdm_memory.py [--n 1000] [--channels 500] [--budget-mb 200]
                                          [--decorrelation] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAYER = "encoder.block9"
SIDE = 20  # feature maps are SIDE x SIDE
BYTES_PER_FEATURE_VALUE = 16  # float32 read + shifted float32 copy, and room for h5py's buffers


def write_file(path: Path, n: int, channels: int, batch: int = 100) -> float:
    from neuroalign.activations import ActivationWriter

    rng = np.random.default_rng(0)
    latent = rng.standard_normal((n, 8), dtype=np.float32)
    mixing = rng.standard_normal((8, channels * SIDE * SIDE), dtype=np.float32) * 0.3
    t0 = time.perf_counter()
    with ActivationWriter(path, compression_level=0) as writer:
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            x = latent[start:stop] @ mixing  # some shared structure, so the RDM is not flat
            x += rng.standard_normal(x.shape, dtype=np.float32)
            ids = [f"stim{i:05d}" for i in range(start, stop)]
            writer.write_batch({LAYER: x.reshape(stop - start, channels, SIDE, SIDE)}, ids)
    return time.perf_counter() - t0


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(path: str, chunk_size: int, with_decorrelation: bool) -> None:
    """Runs in a fresh process: prints one JSON line of timings and memory."""
    import tracemalloc

    import torch  # noqa: F401  (imported before the baseline, as calc_rdm needs it)

    from neuroalign.analysis import calc_rdm, decorrelation, layer_chunks
    from neuroalign.workflows import stimulus_coords

    ids = stimulus_coords(path)["stimulus_id"].values
    baseline = maxrss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    rdm = calc_rdm(layer_chunks(path, LAYER, chunk_size), ids, "correlation")
    t_rdm = time.perf_counter() - t0
    _, traced_rdm = tracemalloc.get_traced_memory()
    rss_rdm = maxrss_mb()
    result = {
        "baseline_rss_mb": baseline,
        "rdm_peak_rss_mb": rss_rdm,
        "rdm_traced_peak_mb": traced_rdm / 2**20,
        "rdm_seconds": t_rdm,
    }
    np.save(Path(path).with_suffix(".rdm.npy"), rdm.get_vectors()[0])
    if with_decorrelation:
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        dec = decorrelation(layer_chunks(path, LAYER, chunk_size), mean_abs_r=False)
        result["decorrelation_seconds"] = time.perf_counter() - t0
        result["decorrelation_traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        result["decorrelation_peak_rss_mb"] = maxrss_mb()
        result["L"] = dec["L"]
        result["participation_ratio"] = dec["participation_ratio"]
    print(json.dumps(result))


def check_subset(path: Path, k: int = 200) -> float:
    """Largest difference between the streamed RDM and rsatoolbox on the first k stimuli."""
    import netCDF4
    import rsatoolbox
    from scipy.spatial.distance import squareform

    with netCDF4.Dataset(path) as ds:
        var = ds[LAYER.replace(".", "/")]["activation"]
        x = np.asarray(var[:k], dtype=np.float64).reshape(k, -1)
    expected = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
    streamed = squareform(np.load(path.with_suffix(".rdm.npy")))[:k, :k]
    return float(np.abs(squareform(streamed, checks=False) - expected.get_vectors()[0]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="stimuli")
    parser.add_argument("--channels", type=int, default=500, help="channels of 20 x 20 maps")
    parser.add_argument("--decorrelation", action="store_true", help="also stream decorrelation")
    parser.add_argument("--budget-mb", type=float, default=200.0)
    parser.add_argument("--dir", default=None, help="where to write the file (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the file")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)  # path, chunk, 0/1
    args = parser.parse_args()
    if args.measure:
        measure(args.measure[0], int(args.measure[1]), args.measure[2] == "1")
        return

    n, d = args.n, args.channels * SIDE * SIDE
    chunk_size = max(SIDE * SIDE, int(args.budget_mb * 2**20 / (n * BYTES_PER_FEATURE_VALUE)))
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_rdm_memory_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "activations.nc"
    try:
        t_write = write_file(path, n, args.channels)
        size_mb = path.stat().st_size / 2**20
        layer_mb = n * d * 4 / 2**20
        print(f"layer {LAYER}: {n} x {args.channels} x {SIDE} x {SIDE} = {n} x {d} float32")
        print(f"  {layer_mb:.0f} MB of values, file {size_mb:.0f} MB, written in {t_write:.1f} s")
        print(
            f"  budget {args.budget_mb:.0f} MB -> chunks of {chunk_size} features "
            f"({-(-d // chunk_size)} chunks)"
        )
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                str(path),
                str(chunk_size),
                str(int(args.decorrelation)),
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        extra = r["rdm_peak_rss_mb"] - r["baseline_rss_mb"]
        print(f"calc_rdm(layer_chunks(...)) correlation RDM: {r['rdm_seconds']:.1f} s")
        print(
            f"  RSS after imports {r['baseline_rss_mb']:.0f} MB, peak {r['rdm_peak_rss_mb']:.0f} MB: "
            f"+{extra:.0f} MB = {extra / layer_mb:.3f} x the layer "
            f"(peak RSS / layer = {r['rdm_peak_rss_mb'] / layer_mb:.3f})"
        )
        print(
            f"  tracemalloc peak (numpy/Python; torch not traced): "
            f"{r['rdm_traced_peak_mb']:.0f} MB = {r['rdm_traced_peak_mb'] / layer_mb:.3f} x the layer"
        )
        if args.decorrelation:
            extra_dec = r["decorrelation_peak_rss_mb"] - r["baseline_rss_mb"]
            print(
                f"decorrelation(layer_chunks(...)): {r['decorrelation_seconds']:.1f} s, "
                f"L = {r['L']:.4f}, participation ratio = {r['participation_ratio']:.3f}"
            )
            print(
                f"  peak RSS of the process so far +{extra_dec:.0f} MB over baseline; "
                f"tracemalloc peak {r['decorrelation_traced_peak_mb']:.0f} MB "
                f"= {r['decorrelation_traced_peak_mb'] / layer_mb:.3f} x the layer"
            )
        diff = check_subset(path)
        print(
            f"check: streamed RDM vs rsatoolbox (float64, first 200 stimuli): max |diff| {diff:.1e}"
        )
    finally:
        if not args.keep:
            for p in (path, path.with_suffix(".rdm.npy")):
                p.unlink(missing_ok=True)
            if args.dir is None:
                folder.rmdir()


if __name__ == "__main__":
    main()
