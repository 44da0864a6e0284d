"""Extraction overhead and memory: ``neuroalign.extraction.extract`` vs a bare no-grad forward.

Speed, on CPU (and on the GPU when there is one), for several models, each with random
weights and random images (--configs picks some):
  resnet18-64   resnet18 at 64 px, its stage outputs (layer1-4, avgpool, fc), 512 images;
  resnet18-224  the same at 224 px, 128 images;
  vit_b_16      torchvision's ViT-B/16 at 224 px, all 12 encoder blocks (every token), 32 images;
  conv_mae-96   neuroalign's conv MIM encoder at 96 px (STL-10's size), its 9 blocks, 512 images.
Timed:
  bare          model(x) under torch.no_grad over pre-built input batches;
  bare+load     the same, each batch built from the StimulusSet by the same transform;
  extract ...   extract() without compression and with zlib (the default: shuffle + deflate
                level 1); on CPU also zlib with the three steps overlapped in threads (the
                accelerator default) instead of run in turn.
Each is the best of --repeats rounds (all variants run in turn in each round, each writing a
new file: in $NEUROALIGN_BENCH_DIR, else /dev/shm, see ``scratch_dir``); ratios are
against ``bare``; images/s are of each variant. The floor printed below them is ``bare``
plus the time to shuffle and deflate every chunk of the file on one thread per core
(``encode_seconds``): what the default format costs whatever the writer does around it.
``results(quick)`` gives the table rows: extract with zlib against bare for conv_mae-96 and
resnet18-64 (256 and 512 images when quick).

Memory (--memory): peak RSS growth while extracting CIFAR-10 (NEUROALIGN_DATA) through every
encoder block of conv_mae at 32 px, batch 256, for one batch, 1,000 and 10,000 images, each in
a fresh subprocess (the peak is reset after loading via /proc/self/clear_refs and read from
VmHWM; ru_maxrss where that is unavailable), with glibc's default allocator and with a fixed
mmap threshold. The extraction holds at most two batches of activations, so the growth should
not depend on the number of images.

    python benchmarks/bench_extraction.py [--configs resnet18-64 vit_b_16] [--repeats 3]
    python benchmarks/bench_extraction.py --quick        # the table rows, small sizes
    NEUROALIGN_DATA=/path python benchmarks/bench_extraction.py --memory-only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torchvision

from neuroalign.activations import codec
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform
from neuroalign.extraction.hooks import Runner
from neuroalign.extraction.layers import resolve_layers
from neuroalign.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, overhead, timed  # noqa: E402

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
RESNET_STAGES = ["layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]


def make_config(name: str):
    """(model, image size, layers, n images, batch size, normalisation)."""
    if name.startswith("resnet18-"):
        size = int(name.split("-")[1])
        n, batch = (512, 64) if size <= 64 else (128, 32)
        return torchvision.models.resnet18(weights=None), size, RESNET_STAGES, n, batch, IMAGENET
    if name == "vit_b_16":
        model = torchvision.models.vit_b_16(weights=None)
        return model, 224, "encoder.layers.*", 32, 8, IMAGENET
    if name == "conv_mae-96":
        return create_model("conv_mae"), 96, None, 512, 64, (None, None)
    raise ValueError(f"unknown config {name!r}")


CONFIGS = ("resnet18-64", "resnet18-224", "vit_b_16", "conv_mae-96")


def timed_interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Best of ``repeats`` seconds per function, the functions run in turn in every round
    (so load from other processes hits all of them alike)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}


def scratch_dir() -> str | None:
    """Where the files are written: $NEUROALIGN_BENCH_DIR, else /dev/shm (tmpfs) when there is
    one, else the system's temporary folder. A RAM file system measures the writer without
    the disk, whose speed belongs to the machine (and, shared, to whoever else writes)."""
    given = os.environ.get("NEUROALIGN_BENCH_DIR")
    if given:
        return given
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def encode_seconds(model, names, x, repeats: int = 3) -> float:
    """Seconds to shuffle and deflate one batch's activations as the writer does (its chunks,
    codec.encode_chunk at level 1, on a pool of one thread per core): the part of the writer
    no choice of threads or copies removes while the format stays HDF5's shuffle + deflate."""
    runner = Runner(model, names, True, None, "all", x.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        arrays = {k: v.copy() for k, v in runner.arrays(runner.features(x)).items()}
    runner.close()
    pieces = []
    for values in arrays.values():
        rows = codec.chunk_length(len(values), 4 * values[0].size)
        pieces += [values[i : i + rows] for i in range(0, len(values), rows)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        seconds, _ = timed(lambda: list(pool.map(lambda p: codec.encode_chunk(p, 1), pieces)),
                           repeats)
    return seconds


def speed(config: str, device: str, repeats: int, n: int | None = None, variants=None,
          floor: bool = False) -> tuple[dict[str, float], dict, int]:
    """(best seconds per variant, file MiB per compression, n images) of one config."""
    torch.manual_seed(0)
    model, size, layers, n_default, batch, (mean, std) = make_config(config)
    n = n or n_default
    model = model.to(device).eval()
    rng = np.random.default_rng(0)
    stimuli = StimulusSet(
        stimulus_id=[f"img{i:04d}" for i in range(n)],
        images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        name="random",
    )
    transform, description = image_transform(size, mean, std)
    starts = range(0, n, batch)

    def load(start):
        stop = min(start + batch, n)
        return torch.stack([transform(stimuli.image(i)) for i in range(start, stop)])

    batches = [load(s).to(device) for s in starts]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def bare():
        with torch.no_grad():
            for x in batches:
                model(x)
        sync()

    class Reached(Exception):
        pass

    def bare_to_last():
        """The bare forward ended after the last chosen layer, as extract ends it."""
        last = dict(model.named_modules())[resolve_layers(model, layers)[-1]]

        def stop(*args):
            raise Reached

        handle = last.register_forward_hook(stop)
        try:
            with torch.no_grad():
                for x in batches:
                    try:
                        model(x)
                    except Reached:
                        pass
            sync()
        finally:
            handle.remove()

    def bare_load():
        with torch.no_grad():
            for s in starts:
                model(load(s).to(device))
        sync()

    counter = itertools.count()
    sizes = {}
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:

        def run(compression, overlap=None):
            def go():
                out = Path(tmp) / f"acts{next(counter)}.nc"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # shared ReLUs
                    extract(model, stimuli, layers, out, transform=(transform, description),
                            batch_size=batch, device=device, compression=compression,
                            overlap=overlap, progress=False)
                sizes[compression] = out.stat().st_size / 2**20
                out.unlink()

            return go

        bare()  # warm-up
        everything = {
            "bare": bare,
            "bare to the last layer": bare_to_last,
            "bare+load": bare_load,
            "extract, uncompressed": run(None),
            "extract, zlib": run("zlib"),
        }
        if device == "cpu":
            everything["extract, zlib, overlapped"] = run("zlib", overlap=True)
        chosen = {k: v for k, v in everything.items() if variants is None or k in variants}
        results = timed_interleaved(chosen, repeats)
    if floor:
        names = resolve_layers(model, layers)
        results["encode"] = encode_seconds(model, names, batches[0]) * len(batches)
    return results, sizes, n


def print_speed(args, config: str, device: str) -> None:
    results, sizes, n = speed(config, device, args.repeats, floor=True)
    _, size, _, _, batch, _ = make_config(config)
    print(
        f"{config}: {n} images at {size} px, batch {batch}, {device}, torch threads "
        f"{torch.get_num_threads()}, best of {args.repeats}, load {os.getloadavg()[0]:.1f}; file "
        + ", ".join(f"{k or 'uncompressed'} {v:.1f} MiB" for k, v in sizes.items())
    )
    encode = results.pop("encode")
    for name, seconds in results.items():
        print(f"  {name:26s} {seconds:7.2f} s   x{seconds / results['bare']:5.2f} bare   "
              f"{n / seconds:7.1f} images/s")
    print(f"  {'floor: bare + encode':26s} {results['bare'] + encode:7.2f} s   "
          f"x{1 + encode / results['bare']:5.2f} bare   (shuffle + deflate of every chunk on "
          f"{os.cpu_count()} threads: {encode:.2f} s)")


#: config -> (target of ours / bare, images in the quick form)
TARGETS = {"conv_mae-96": (1.2, 256), "resnet18-64": (1.15, 512)}


def results(quick: bool = False) -> list[Row]:
    """One row per target config: extract (zlib, the default) / bare forward, best of rounds."""
    rows = []
    for config, (target, quick_n) in TARGETS.items():
        load = os.getloadavg()[0]
        repeats = 2 if quick else 3
        times, sizes, n = speed(config, "cpu", repeats, quick_n if quick else None,
                                variants=("bare", "bare to the last layer", "extract, zlib"),
                                floor=True)
        _, size, _, _, batch, _ = make_config(config)
        floor = 1 + times["encode"] / times["bare"]
        rows.append(overhead(
            f"extraction, {config} ({n} images, batch {batch}, all layers of the config)",
            times["extract, zlib"], times["bare"], "bare no-grad forward", target,
            f"float32, zlib level 1 (shuffle + ISA-L deflate), file {sizes['zlib']:.0f} MiB "
            f"written to {scratch_dir() or tempfile.gettempdir()}; "
            f"best of {repeats}, {torch.get_num_threads()} torch threads, load {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; floor x{floor:.2f} = bare + shuffle/deflate of every "
            f"chunk on {os.cpu_count()} threads ({times['encode']:.2f} s). extract ends each "
            "forward pass after the last chosen layer (after the first batch); the bare forward "
            f"ended there takes {times['bare to the last layer']:.2f} s, and extract is "
            f"x{times['extract, zlib'] / times['bare to the last layer']:.2f} of it"))
    return rows


MEMORY_CHILD = r"""
import json, os, resource, sys, tempfile
import numpy as np, torch
from neuroalign.data.cifar import load_cifar10
from neuroalign.extraction import extract, image_transform
from neuroalign.models import create_model

n, batch = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
stimuli = load_cifar10("train").subset(slice(0, n))
model = create_model("conv_mae").eval()
transform = image_transform(32)
tmp = tempfile.mkdtemp()
# warm up the code paths (thread pools, HDF5, first allocations) on a few images
extract(model, stimuli.subset(slice(0, 4)), None, os.path.join(tmp, "w.nc"), transform=transform,
        batch_size=4, progress=False)
import gc; gc.collect()

def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before, how = rss_kib("VmHWM:"), "VmHWM"
except OSError:
    before, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
path = extract(model, stimuli, None, os.path.join(tmp, "a.nc"), transform=transform,
               batch_size=batch, progress=False)
after = rss_kib("VmHWM:") if how == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
acts = sum(4 * int(np.prod(o.shape[1:])) for o in model.forward_intermediates(torch.zeros(1, 3, 32, 32)))
print(json.dumps({"n": n, "growth_mib": (after - before) / 1024, "how": how,
                  "batch_activations_mib": batch * acts / 2**20,
                  "file_mib": os.path.getsize(path) / 2**20}))
"""


def memory(args) -> None:
    if not os.environ.get("NEUROALIGN_DATA"):
        print("memory: set NEUROALIGN_DATA (CIFAR-10) to measure")
        return
    allocators = {
        "glibc default": {},
        # a fixed threshold: large blocks are mmapped and go back to the OS when freed
        "MALLOC_MMAP_THRESHOLD_=131072": {"MALLOC_MMAP_THRESHOLD_": "131072"},
    }
    for label, extra_env in allocators.items():
        rows = []
        for n in (args.mem_batch, 1000, 10000):
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(n), str(args.mem_batch)],
                capture_output=True, text=True, check=True, env={**os.environ, **extra_env},
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        one = rows[0]["growth_mib"]
        print(f"conv_mae, all 9 encoder blocks, CIFAR-10 32 px, batch {args.mem_batch} (one "
              f"batch of activations: {rows[0]['batch_activations_mib']:.0f} MiB), peak RSS "
              f"growth ({rows[0]['how']}), allocator: {label}")
        for row in rows:
            print(f"  {row['n']:6d} images: {row['growth_mib']:7.0f} MiB   "
                  f"x{row['growth_mib'] / one:4.2f} of one batch   file {row['file_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--memory-only", action="store_true", help="only measure peak memory")
    parser.add_argument("--mem-batch", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="only the quick table rows")
    args = parser.parse_args()
    if args.quick:
        for row in results(quick=True):
            print(f"{row.summary()}\n  {row.notes}")
        return
    if not args.memory_only:
        for config in args.configs:
            print_speed(args, config, "cpu")
            if torch.cuda.is_available():
                print_speed(args, config, "cuda")
    if args.memory or args.memory_only:
        memory(args)


if __name__ == "__main__":
    main()
