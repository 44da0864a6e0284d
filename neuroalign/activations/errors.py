"""The errors an activation file can give: a bad file to read, a full disk while writing."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TypeGuard

__all__ = ["ActivationFileError", "DiskFullError", "is_disk_full"]


class ActivationFileError(ValueError):
    """A file that is not a readable neuroalign activation file: not netCDF-4, not written by
    neuroalign, or truncated/corrupt. The message names the file (and the layer, if one)."""


class DiskFullError(OSError):
    """The disk (or quota) filled up while an activation file was written; the ``.partial``
    file is kept and can be continued with ``resume=True`` once there is space."""

    def __str__(self) -> str:  # the message alone, without "[Errno 28]"
        return str(self.strerror)


def is_disk_full(err: BaseException) -> TypeGuard[OSError]:
    """True for an OSError that says the disk or the user's quota is full (HDF5 reports the
    C errno only in its message)."""
    if not isinstance(err, OSError):
        return False
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "Disk quota exceeded" in text


def disk_full(out: Path, partial: Path, n_written: int, err: OSError) -> DiskFullError:
    """The error to raise when a write to ``partial`` found the disk full."""
    message = (
        f"Disk full while writing {out}: the unfinished file {partial} is kept with its first "
        f"{n_written} stimuli ({err}). Free some space, then continue it with resume=True "
        "(neuroalign extract ... --resume); the final file was not touched."
    )
    return DiskFullError(errno.ENOSPC, message, str(partial))
