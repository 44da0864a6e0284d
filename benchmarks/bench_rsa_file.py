"""`neuroalign rsa` on an activation file against the time to read the file once.

Writes (in a temporary folder) the activation file of a resnet18 with random weights
(torchvision, seed 0) on the 92 Cichy images at 224 px (quick: 112 px), 7 layers, float32,
the default compression; then, alternating, median of --repeats:
- ours: ``neuroalign.workflows.rsa_from_file(path, "cichy-it")`` — what ``neuroalign rsa
  file.nc --brain cichy-it`` runs: every layer's correlation RDM, compared with the 15 Cichy
  IT subjects (spearman), noise ceiling;
- baseline: reading every layer once with h5py, decompressing all of it.
Needs the Cichy data in NEUROALIGN_DATA.

    python benchmarks/bench_rsa_file.py [--quick] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, overhead  # noqa: E402

LAYERS = ["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
BRAIN = "cichy-it"


def write_file(path: Path, size: int) -> Path:
    import torch
    import torchvision

    from neuroalign.data.stimulus_sets import load_stimulus_set
    from neuroalign.extraction import extract, image_transform

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    transform = image_transform(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return extract(model, load_stimulus_set("cichy92"), LAYERS, path, transform=transform,
                   batch_size=32, device="cpu", progress=False)


def read_every_layer(path: Path) -> int:
    """Reads (and decompresses) every layer's activations once; returns the bytes read."""
    import h5py

    total = 0
    with h5py.File(path, "r") as f:
        groups = []
        f.visititems(lambda name, obj: groups.append(name) if name.endswith("/activation") else None)
        for name in groups:
            total += f[name][...].nbytes
    return total


def run_rsa(path: Path):
    from neuroalign import workflows

    return workflows.rsa_from_file(path, BRAIN)


def results(quick: bool = False, repeats: int = 3, keep: str | None = None) -> list[Row]:
    size = 112 if quick else 224
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench_rsa_file_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"resnet18_cichy92_{size}px.nc"
    try:
        if not path.exists():
            write_file(path, size)
        run_rsa(path)  # warm: imports, the brain data, the file in the page cache
        load = os.getloadavg()[0]
        times: dict[str, list[float]] = {"ours": [], "read": []}
        n_bytes = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            ds = run_rsa(path)
            times["ours"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_bytes = read_every_layer(path)
            times["read"].append(time.perf_counter() - t0)
        ours, read = statistics.median(times["ours"]), statistics.median(times["read"])
        file_mb = path.stat().st_size / 2**20
        return [
            overhead(
                f"neuroalign rsa, resnet18 × 92 Cichy images at {size} px, {len(LAYERS)} layers",
                ours,
                read,
                "reading every layer once (h5py)",
                1.5,
                notes=(
                    f"file {file_mb:.0f} MB ({n_bytes / 2**20:.0f} MB of float32); "
                    f"rsa against {BRAIN} ({ds.sizes['subject']} subjects); "
                    f"load {load:.2f} → {os.getloadavg()[0]:.2f}"
                ),
            )
        ]
    finally:
        if not keep:
            path.unlink(missing_ok=True)
            folder.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="write (or reuse) the file in this folder and keep it")
    args = parser.parse_args()
    for row in results(args.quick, args.repeats, args.keep):
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
