"""Extraction overhead: ``neuroalign.extraction.extract`` vs a bare no-grad forward.

resnet18 (random weights) at 64 px, 512 random images, batch 64, CPU by default. Timed:
  bare       - model(x) under torch.no_grad over pre-built input batches;
  bare+load  - the same, with each batch built from the StimulusSet by the same transform;
  extract    - extract() of the stage outputs (layer1-4, avgpool, fc), with and without zlib,
               and of every leaf module.
Each is the best of --repeats rounds (all variants run in turn in each round); ratios are
against ``bare`` and ``bare+load``.

    python benchmarks/bench_extraction.py [--n 512] [--size 64] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-leaves", action="store_true", help="skip the all-leaves run")
    args = parser.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stimuli = StimulusSet(
        stimulus_id=[f"img{i:04d}" for i in range(args.n)],
        images=rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8),
        name="random",
    )
    model = torchvision.models.resnet18(weights=None).to(args.device).eval()
    transform, description = image_transform(
        args.size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    )
    starts = range(0, args.n, args.batch)

    def load(start):
        stop = min(start + args.batch, args.n)
        return torch.stack([transform(stimuli.image(i)) for i in range(start, stop)])

    batches = [load(s).to(args.device) for s in starts]

    def bare():
        with torch.no_grad():
            for x in batches:
                model(x)

    def bare_load():
        with torch.no_grad():
            for s in starts:
                model(load(s).to(args.device))

    stages = ["layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "acts.nc"

        def run(layers, level=4):
            def go():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # shared ReLUs
                    extract(
                        model,
                        stimuli,
                        layers,
                        out,
                        transform=(transform, description),
                        batch_size=args.batch,
                        device=args.device,
                        compression_level=level,
                        progress=False,
                    )

            return go

        bare()  # warm-up
        variants = {
            "bare": bare,
            "bare+load": bare_load,
            "extract stages": run(stages),
            "extract stages, no zlib": run(stages, 0),
        }
        if not args.skip_leaves:
            variants["extract all leaves"] = run(None)
        results = timed_interleaved(variants, args.repeats)
        run(stages)()
        size_stages = out.stat().st_size

    print(
        f"resnet18, {args.n} images at {args.size} px, batch {args.batch}, {args.device}, "
        f"torch threads {torch.get_num_threads()}, best of {args.repeats}"
    )
    for name, seconds in results.items():
        print(
            f"  {name:24s} {seconds:7.2f} s   x{seconds / results['bare']:5.2f} bare   "
            f"x{seconds / results['bare+load']:5.2f} bare+load"
        )
    print(f"  stage file size: {size_stages / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
