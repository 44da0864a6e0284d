"""Extraction across processes: under ``torchrun`` each rank extracts its share of the stimuli
into its own shard file, and rank 0 writes the manifest (:mod:`neuroalign.activations.shards`).

The ranks share nothing but a gloo process group for three barriers: after every rank has
checked its output (so nothing is written when one of them refuses), after every shard is
finished (rank 0 then opens the manifest's tree to check every shard), and after that check.
Gloo works whatever the device, and the barriers wait up to :data:`BARRIER_TIMEOUT` (a rank
whose shard was finished before a ``--resume`` waits for the others' whole run). A process
group the caller initialised is used as it is. A single process (no ``WORLD_SIZE`` > 1) never
gets here: it writes one file, as before.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from neuroalign.activations import attr_differences
from neuroalign.activations.shards import (
    batch_shares,
    ids_sha256,
    manifest_path,
    open_manifest,
    read_manifest,
    resume_command,
    shard_path,
    shard_settings,
    write_manifest,
)
from neuroalign.training.distributed import env_world, resolve_device

__all__ = ["BARRIER_TIMEOUT", "Sharding", "rank_device", "sharding_from_env"]

#: how long a rank waits at a barrier for the others (a finished shard waits for whole runs)
BARRIER_TIMEOUT = timedelta(days=30)


@dataclass
class Sharding:
    """This process's place in a sharded extraction to ``out`` (the path the run stands for)."""

    out: Path
    rank: int
    count: int
    local_count: int
    shares: list[tuple[int, int]]
    batch_size: int
    initialised_here: bool = field(default=False)

    @property
    def span(self) -> tuple[int, int]:
        return self.shares[self.rank]

    @property
    def empty(self) -> bool:
        start, stop = self.span
        return start == stop

    @property
    def file(self) -> Path:
        return shard_path(self.out, self.rank, self.count)

    @property
    def manifest(self) -> Path:
        return manifest_path(self.out)

    def attrs(self) -> dict:
        start, stop = self.span
        return {"shard_index": self.rank, "shard_count": self.count, "shard_start": start,
                "shard_stop": stop}

    def join(self) -> None:
        """Join (or reuse) the process group."""
        if not dist.is_available():
            raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed.")
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
            self.initialised_here = True

    def barrier(self) -> None:
        dist.barrier()

    def leave(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialised_here = False

    def check_output(self, resume: bool, overwrite: bool) -> None:
        """Rank 0: an existing manifest is continued (``resume``) or replaced (``overwrite``)."""
        if self.rank == 0 and self.manifest.exists() and not (resume or overwrite):
            raise FileExistsError(
                f"{self.manifest} (a sharded extraction) exists: --resume (resume=True) "
                "continues or keeps it, --overwrite (overwrite=True) replaces it.")

    def start(self, ids: np.ndarray, settings: dict, resume: bool) -> None:
        """Rank 0: write the manifest, or check the one a resumed run left (same shares, ids,
        settings and weights)."""
        if self.rank != 0:
            return
        settings = shard_settings(settings)
        if resume and self.manifest.exists():
            old = read_manifest(self.manifest)
            differ = []
            for key, now in (("shard_count", self.count), ("batch_size", self.batch_size),
                             ("n_stimuli", len(ids)), ("stimulus_ids_sha256", ids_sha256(ids))):
                if old.get(key) != now:
                    differ.append(f"{key}: manifest {old.get(key)!r}, now {now!r}")
            differ += [d.replace("file ", "manifest ", 1)
                       for d in attr_differences(settings, old["settings"])]
            if differ:
                raise ValueError(
                    f"Cannot resume {self.manifest}: it was written by a run with other "
                    "settings (" + "; ".join(differ) + "). Run with the settings and the "
                    "number of processes it names, or start afresh with --overwrite "
                    "(overwrite=True).")
            return
        write_manifest(self.out, self.shares, ids, self.batch_size, settings, _command(self))

    def finish(self) -> Path:
        """Every rank: wait for all shards; rank 0 opens them through the manifest (which checks
        each of them); then all return the manifest's path."""
        self.barrier()
        try:
            if self.rank == 0:
                open_manifest(self.manifest, chunks={}).close()
            self.barrier()
        finally:
            self.leave()
        return self.manifest


def sharding_from_env(out: str | Path, n: int, batch_size: int) -> Sharding | None:
    """The sharding torchrun's environment describes (``WORLD_SIZE`` > 1), else None."""
    rank, world, _ = env_world()
    if world == 1:
        return None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world) or world)
    return Sharding(Path(out), rank, world, local_world, batch_shares(n, batch_size, world),
                    batch_size)


def rank_device(device: str | torch.device | None) -> str | torch.device | None:
    """Under torchrun: ``"auto"`` and ``"cuda"`` become this rank's GPU (``cuda:LOCAL_RANK``;
    ``"auto"`` the CPU without one); anything else is kept."""
    local = env_world()[2]
    if device == "auto":
        return resolve_device("auto", local)
    if str(device) == "cuda":
        return resolve_device("auto", local) if torch.cuda.is_available() else torch.device("cuda")
    return device


def _command(sharding: Sharding) -> str:
    """The command that continues this run, for the manifest."""
    argv = sys.argv
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "neuroalign":
        return resume_command(argv[1:], sharding.count, sharding.local_count)
    return ("the same script under the same torchrun layout "
            f"({sharding.count} processes) with extract(..., resume=True)")
