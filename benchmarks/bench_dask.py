"""An RDM of an activation set larger than a dask worker's memory: two workers of a
``LocalCluster`` against the single-process RDM read from the file in stimulus blocks.

Writes one layer (n stimuli × d features, float32, uncompressed, batches of 500 stimuli as
`ActivationWriter` chunks them) with some shared structure and a large mean, then in a fresh
process each:
  single   ``calc_rdm(layer_blocks(path, layer), ids)``: the file read in groups of stimuli
           within ``LAYER_READ_BYTES`` (512 MiB), the block Gram in numpy on 2 BLAS threads;
  dask     ``calc_rdm(flatten(open_activations(path), layer), ids)`` with a ``Client`` of a
           ``LocalCluster`` of 2 workers × 1 thread (each worker's BLAS on one thread, so both
           runs use the 2 cores), each worker limited to ``--worker-memory``, below the set's
           size: blocks of rows from the workers' free memory, one task per pair of blocks.
Reported: seconds, the peak resident memory of the single process, of each worker and of the
client (which assembles the n × n result), and the largest difference between the two RDMs.

    python benchmarks/bench_dask.py --issue-size  # 20,000 × 100,000 (8 GB; ~30 min on 2 cores)
    python benchmarks/bench_dask.py               # 10,000 × 50,000 (2 GB), the table's row
    python benchmarks/bench_dask.py --quick       # 4,000 × 40,000 (640 MB; ~2 min)
    python benchmarks/bench_dask.py --n 8000 --d 50000 --worker-memory 1GiB --dir /data/tmp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, overhead  # noqa: E402

LAYER = "layer"
#: (n, d, worker limit): quick, the table's full run, and the issue's size (--issue-size)
SIZES = {True: (4000, 40_000, "1GiB"), False: (10_000, 50_000, "1536MiB")}
ISSUE_SIZE = (20_000, 100_000, "3GiB")


def write_file(path: Path, n: int, d: int, batch: int = 500) -> None:
    from tqdm import tqdm

    from neuroalign.activations import ActivationWriter

    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((8, d), dtype=np.float32)
    with ActivationWriter(path, compression=None) as writer:
        for start in tqdm(range(0, n, batch), desc=f"writing {n} × {d}", unit="batch"):
            stop = min(start + batch, n)
            x = rng.standard_normal((stop - start, 8), dtype=np.float32) @ mixing
            x += rng.standard_normal(x.shape, dtype=np.float32)
            x += 10.0
            writer.write_batch({LAYER: x}, [f"s{i:06d}" for i in range(start, stop)])


PEAK = """
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

SINGLE = PEAK + """
import json, sys, time, numpy as np
from neuroalign.analysis import calc_rdm
from neuroalign.analysis.streaming import layer_blocks
from neuroalign.activations import open_activations
path, layer, out = sys.argv[1:4]
tree = open_activations(path, chunks=None)
ids = tree["stimulus_id"].values.astype(str)
tree.close()
base = peak_mib()
t0 = time.perf_counter()
rdm = calc_rdm(layer_blocks(path, layer), ids, "correlation")
seconds = time.perf_counter() - t0
np.save(out, rdm.get_vectors()[0])
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), "baseline_mib": base}))
"""

DASK = PEAK + """
import json, sys, time, numpy as np
from distributed import Client, LocalCluster
from neuroalign.activations import flatten, open_activations
from neuroalign.analysis import calc_rdm
from neuroalign.analysis.dask_gram import default_block_bytes

def pid():
    import os
    return os.getpid()

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

if __name__ == "__main__":
    path, layer, out, limit = sys.argv[1:5]
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=limit,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(pid)
        baseline = client.run(peak_mib)
        client.run(reset_peak)
        block = default_block_bytes()
        tree = open_activations(path)
        ids = tree["stimulus_id"].values.astype(str)
        t0 = time.perf_counter()
        rdm = calc_rdm(flatten(tree, layer), ids, "correlation")
        seconds = time.perf_counter() - t0
        tree.close()
        workers = client.run(peak_mib)
        restarted = client.run(pid) != pids
    np.save(out, rdm.get_vectors()[0])
    print(json.dumps({"seconds": seconds, "worker_peak_mib": list(workers.values()),
                      "worker_baseline_mib": list(baseline.values()), "client_peak_mib": peak_mib(),
                      "block_mib": block / 2**20, "restarted": restarted}))
"""


def run_child(code: str, *args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, d: int, worker_memory: str, folder: str | None) -> dict:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "acts.nc"
        write_file(path, n, d)
        load = os.getloadavg()[0]
        single = run_child(SINGLE, str(path), LAYER, str(Path(tmp) / "single.npy"))
        spread = run_child(DASK, str(path), LAYER, str(Path(tmp) / "dask.npy"), worker_memory)
        diff = float(np.abs(np.load(Path(tmp) / "single.npy") - np.load(Path(tmp) / "dask.npy")).max())
        return {"n": n, "d": d, "set_mib": n * d * 4 / 2**20, "worker_memory": worker_memory,
                "single": single, "dask": spread, "max_abs_difference": diff,
                "load": (load, os.getloadavg()[0])}


def results(quick: bool = False, folder: str | None = None) -> list[Row]:
    n, d, limit = SIZES[quick]
    m = measure(n, d, limit, folder)
    s, k = m["single"], m["dask"]
    return [overhead(
        f"RDM of a layer larger than a worker, {n} × {d} float32 ({m['set_mib']:.0f} MiB), "
        f"2 dask workers × 1 thread, {limit} each",
        k["seconds"], s["seconds"], "single process, file read in stimulus blocks", 2.0,
        f"peak per worker {max(k['worker_peak_mib']):.0f} MiB of {limit} (baseline "
        f"{max(k['worker_baseline_mib']):.0f}), blocks of {k['block_mib']:.0f} MiB, worker "
        f"restarted: {k['restarted']}; client peak {k['client_peak_mib']:.0f} MiB (the n × n "
        f"result); single process peak {s['peak_mib']:.0f} MiB; max |difference| "
        f"{m['max_abs_difference']:.1e}; load {m['load'][0]:.1f} -> {m['load'][1]:.1f}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--issue-size", action="store_true",
                        help="20,000 × 100,000 with 3 GiB workers")
    parser.add_argument("--n", type=int)
    parser.add_argument("--d", type=int)
    parser.add_argument("--worker-memory")
    parser.add_argument("--dir", help="where the file is written (default: the system's temp)")
    args = parser.parse_args()
    n, d, limit = ISSUE_SIZE if args.issue_size else SIZES[args.quick]
    t0 = time.perf_counter()
    m = measure(args.n or n, args.d or d, args.worker_memory or limit, args.dir)
    print(json.dumps(m, indent=1))
    print(f"total {time.perf_counter() - t0:.0f} s; dask / single: "
          f"{m['dask']['seconds'] / m['single']['seconds']:.2f}")


if __name__ == "__main__":
    main()
