"""Test-wide fixtures and the markers of pyproject.toml.

- ``requires_gpu``: the test runs only where CUDA is available (skipped otherwise, with the
  reason).
- ``shared_data``: the test reads the real data under ``NEUROALIGN_DATA``. Given file names
  (``@pytest.mark.shared_data("cifar10_jpeg.tar.gz")``), it is skipped when any of them is
  missing there, naming them. Every test using the ``shared_data`` fixture gets the marker, so
  ``-m "not shared_data"`` runs the suite without the real data.
"""

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    # The README's command gives NEUROALIGN_DATA relative to the checkout; tests that change
    # directory (the docs examples, CLI runs in tmp folders) must still find the data.
    for name in ("NEUROALIGN_DATA", "U2NET_HOME"):
        value = os.environ.get(name)
        if value and not os.path.isabs(value):
            os.environ[name] = os.path.abspath(value)


def _shared_data_dir() -> Path | None:
    root = os.environ.get("NEUROALIGN_DATA")
    if not root:
        return None
    path = Path(root)
    return path if path.is_dir() else None


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    root = _shared_data_dir()
    has_cuda = None  # torch is imported only if a test needs a GPU
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "shared_data"
        ):
            item.add_marker(pytest.mark.shared_data)
        for marker in item.iter_markers("shared_data"):
            if root is None:
                item.add_marker(pytest.mark.skip(
                    reason="real data not available: set NEUROALIGN_DATA to the shared data folder"))
                break
            missing = [name for name in marker.args if not (root / name).exists()]
            if missing:
                item.add_marker(pytest.mark.skip(
                    reason=f"{', '.join(missing)} not found under NEUROALIGN_DATA={root}"))
                break
        if item.get_closest_marker("requires_gpu"):
            if has_cuda is None:
                has_cuda = _cuda_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none is available"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (NEUROALIGN_DATA); tests using it skip when it is absent."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("real data not available: set NEUROALIGN_DATA to the shared data folder")
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch intra-op thread per test, restored after it: the tests' tensors are small, so
    thread start-up dominates on a busy machine, and CPU float sums stay in one order."""
    try:
        import torch
    except ImportError:  # reading-only tests need no torch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_seed():
    """The global torch generator seeded with 0 before every test (whatever ran before)."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _sigint_as_in_a_terminal():
    """Background jobs (CI, nohup, `cmd &` in a script) start with SIGINT ignored, and neuroalign
    rightly leaves an ignored signal alone. The interrupt tests send SIGINT as a user's Ctrl-C
    would, so the test process gets Python's usual handler; children started from it then get
    the default disposition too."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def signal_child(tmp_path):
    """Run ``child_code`` (argv: ready-file, sent-file, *args) in a subprocess, wait until it
    touches the ready-file at the point it chooses, send it ``sig``, touch the sent-file so it
    goes on, and return (returncode, stdout, stderr). The signal thus always lands at a known
    point of the child's work."""
    import subprocess
    import sys
    import time

    def run(child_code: str, args: list[str], sig: int) -> tuple[int, str, str]:
        ready, sent, child = tmp_path / "ready", tmp_path / "sent", tmp_path / "child.py"
        child.write_text(child_code)
        proc = subprocess.Popen([sys.executable, str(child), str(ready), str(sent), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), proc.communicate()
        os.kill(proc.pid, sig)
        sent.touch()
        out, err = proc.communicate(timeout=240)
        return proc.returncode, out, err

    return run
