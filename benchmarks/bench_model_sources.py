"""Extraction through model specs: a ViT-B/16 from Hugging Face, timm and torchvision, all 12
blocks (every token), against a bare no-grad forward of the same model.

Each model is loaded through ``neuroalign.models.load_model`` with random weights (``hf:`` from
a folder holding a default ``ViTConfig``, the ViT-B/16 shape; ``timm:vit_base_patch16_224`` and
``torchvision:vit_b_16`` with ``weights="random"``), so nothing is downloaded. Timed, in turn,
best of --repeats rounds:
  bare     model(x) under torch.no_grad over pre-built input batches (the model's own
           preprocessing applied beforehand);
  extract  ``extract(model, stimuli, "blocks", ...)`` from the same pre-built inputs, with the
           default compression, written to a temporary file.

    python benchmarks/bench_model_sources.py [--n 32] [--batch-size 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import Row, overhead  # noqa: E402

from neuroalign.extraction import extract  # noqa: E402
from neuroalign.models import load_model  # noqa: E402

SOURCES = ("hf", "timm", "torchvision")


def _spec(source: str, folder: Path) -> tuple[str, str]:
    if source == "hf":
        import transformers

        transformers.ViTModel(transformers.ViTConfig(), add_pooling_layer=False).save_pretrained(folder)
        transformers.ViTImageProcessor().save_pretrained(folder)
        return f"hf:{folder}", "random"
    if source == "timm":
        return "timm:vit_base_patch16_224", "random"
    return "torchvision:vit_b_16", "random"


def measure(source: str, n: int, batch: int, repeats: int) -> Row:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        spec, weights = _spec(source, Path(tmp) / "model")
        loaded = load_model(spec, weights)
        transform, _ = loaded.transform
        pixels = torch.stack([transform(im) for im in images])
        batches = list(pixels.split(batch))
        model = loaded.model

        def bare():
            with torch.no_grad():
                for x in batches:
                    model(x)

        def run():
            out = Path(tmp) / "acts.nc"
            extract(model, pixels, "blocks", out, transform=None, batch_size=batch,
                    progress=False, overwrite=True)
            out.unlink()

        bare()  # warm-up
        times: dict[str, list[float]] = {"bare": [], "extract": []}
        for _ in range(repeats):
            for name, fn in (("bare", bare), ("extract", run)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    ours, base = min(times["extract"]), min(times["bare"])
    return overhead(f"extract ViT-B/16 through {spec.split(':')[0]}:, 12 blocks, {n} images at 224 px",
                    ours, base, "bare forward", 1.15,
                    f"batch {batch}, every token, default compression, best of {repeats}, "
                    f"torch threads {torch.get_num_threads()}")


def results(quick: bool = False) -> list[Row]:
    """Full: the three sources, 32 images, best of 2; quick: hf: and timm: (the issue's
    targets), 16 images, once."""
    n, repeats = (16, 1) if quick else (32, 2)
    rows = []
    for source in SOURCES[:2] if quick else SOURCES:
        if source != "torchvision":
            try:
                __import__("transformers" if source == "hf" else "timm")
            except ImportError:
                continue
        rows.append(measure(source, n, 8, repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    args = parser.parse_args()
    for source in args.sources:
        row = measure(source, args.n, args.batch_size, args.repeats)
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
