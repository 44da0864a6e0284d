"""SIGINT (Ctrl-C) and SIGTERM (what cluster schedulers send before they kill) during long work.

:func:`deferred_signals` turns the first of these signals into a request that the work loop
reads between steps (``pretrain`` after a step, ``extract`` after a batch); the loop saves what
it has and raises :class:`Interrupted`, which names what was saved. A second signal stops at
once (a plain ``KeyboardInterrupt``). The handlers are installed only for the duration of the
call, only in the main thread (``signal.signal`` requires it), not over a signal the process
ignores, and the previous handlers are restored afterwards.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Interrupted", "StopRequest", "deferred_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Work stopped by SIGINT or SIGTERM after saving what it had.

    A ``KeyboardInterrupt``, so ``except Exception`` does not swallow it.

    Attributes:
        signum: the signal received.
        saved: the file holding the saved work (a checkpoint, an activation ``.partial``).
        what: what was saved, in words (e.g. ``"checkpoint of step 24 in runs/x/checkpoint.pt"``).
        exit_code: the shell's convention for a process ended by ``signum`` (128 + signum:
            130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, saved: Path, what: str, resume_hint: str):
        self.signum, self.saved, self.what = int(signum), Path(saved), what
        super().__init__(f"interrupted by {self.signal_name}: {what}; {resume_hint}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The signal received so far (``signum``, None before any); true once one arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextmanager
def deferred_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT/SIGTERM set the yielded :class:`StopRequest` instead of stopping.

    Outside the main thread nothing is installed (the request stays false).
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {}
    for signum in SIGNALS:
        handler = signal.getsignal(signum)
        if handler is signal.SIG_IGN or handler is None:  # ignored, or set outside Python
            continue
        previous[signum] = handler

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def on_signal(signum, frame) -> None:
        if stop:  # the second one: stop now
            restore()
            raise KeyboardInterrupt
        stop.signum = signum

    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        yield stop
    finally:
        restore()
