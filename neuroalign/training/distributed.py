"""Several processes, one training run: ``torchrun`` + DistributedDataParallel.

Launch a recipe on 4 GPUs of one machine with

    torchrun --nproc_per_node 4 -m neuroalign pretrain pretrain/stl10_periphery.toml --out runs/p

(or across nodes with ``--nnodes``/``--rdzv_endpoint``). torchrun sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; :func:`setup` reads them. ``batch_size`` stays the *global* batch: every
process builds the same global batch (same images, crops and masks, from ``(seed, step)``) and
trains on its own contiguous slice of ``batch_size / world_size`` images, so a run on W
processes is the single-process run with the same recipe, up to the order of float sums.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "max_over_ranks", "barrier", "env_world", "free_port", "gather_rows", "mean_over_ranks", "rank_slice", "resolve_device", "setup", "spawn_local", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without)."""
    values = []
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = os.environ.get(name, "")
        try:
            values.append(int(raw) if raw.strip() else default)
        except ValueError:
            raise ValueError(f"Environment variable {name} must be an integer; got {raw!r}.") from None
    rank, world, local = values
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"Inconsistent RANK={rank} / WORLD_SIZE={world} in the environment.")
    return rank, world, local


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's GPU (``cuda:LOCAL_RANK``) when there is one, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)


def setup(device: str = "auto", backend: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (once), and pick this process's device.

    Without torchrun's variables (or with WORLD_SIZE=1) this is a single process and nothing is
    initialised. A process group that the caller initialised already is used as it is.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
        backend: ``"auto"`` (nccl for CUDA devices, gloo otherwise), ``"gloo"``, ``"nccl"``, ``"mpi"``.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistInfo(rank, world, local, resolve_device(device, local))
    rank, world, local = env_world()
    dev = resolve_device(device, local)
    if world == 1:
        return DistInfo(0, 1, 0, dev)
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed.")
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev, initialised_here=True)


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def rank_slice(batch_size: int, info: DistInfo) -> slice:
    """This rank's contiguous share of a global batch; the global batch must split evenly."""
    if batch_size % info.world_size:
        raise ValueError(
            f"batch_size {batch_size} (the global batch) must be divisible by the number of "
            f"processes, {info.world_size}."
        )
    share = batch_size // info.world_size
    return slice(info.rank * share, (info.rank + 1) * share)


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor over all processes (the tensor itself in a single process)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def max_over_ranks(value: int, info: DistInfo) -> int:
    """The largest of an int over all processes (e.g. the signal one rank received)."""
    if not info.enabled:
        return int(value)
    tensor = torch.tensor([int(value)], device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def gather_rows(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every rank's (n, ...) tensor stacked in rank order: (world_size·n, ...)."""
    if not info.enabled:
        return value
    parts = [torch.empty_like(value) for _ in range(info.world_size)]
    dist.all_gather(parts, value.contiguous())
    return torch.cat(parts)


def spawn_local(fn, world_size: int, *args, start_method: str = "spawn", **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` in ``world_size`` local processes, each with the environment
    torchrun would give it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, a free ``MASTER_PORT`` on
    127.0.0.1), and wait for all of them. For tests and for one machine without torchrun, e.g.
    ``spawn_local(pretrain, 2, config, "runs/x", progress=False)`` (CPU: the gloo backend).

    ``fn`` and its arguments must be picklable (``fn`` importable by name). An exception in any
    process is raised here. ``start_method="fork"`` (Linux, CPU only) skips re-importing
    everything in the children.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1; got {world_size}.")
    port = free_port()
    mp.start_processes(_local_worker, args=(world_size, port, fn, args, kwargs), nprocs=world_size,
                       join=True, start_method=start_method)


def _local_worker(rank: int, world_size: int, port: int, fn, args, kwargs) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    fn(*args, **kwargs)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a local MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
