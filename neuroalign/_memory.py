"""Handing memory that a process has freed back to the OS (glibc keeps freed blocks in its
arenas otherwise, and the resident size creeps up task after task or batch after batch)."""

from __future__ import annotations

import ctypes

__all__ = ["release_freed_memory"]


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _load_glibc():
    """(malloc_trim, mallinfo2) of glibc, or None where the C library is another one."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _Mallinfo2
    return libc.malloc_trim, mallinfo2


_GLIBC = _load_glibc()


def release_freed_memory(above_bytes: int = 0) -> None:
    """Trim glibc's arenas once they hold more than ``above_bytes`` free; nothing elsewhere."""
    if _GLIBC is None:
        return
    malloc_trim, mallinfo2 = _GLIBC
    if mallinfo2().fordblks > above_bytes:
        malloc_trim(0)
