import os
from pathlib import Path

import pytest


def _shared_data_dir() -> Path | None:
    root = os.environ.get("NEUROALIGN_DATA")
    if not root:
        return None
    path = Path(root)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (NEUROALIGN_DATA); tests using it skip when it is absent."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("real data not available: set NEUROALIGN_DATA to the shared data folder")
    return path


def require_file(shared_data: Path, relpath: str) -> Path:
    path = shared_data / relpath
    if not path.exists():
        pytest.skip(f"{relpath} not found under NEUROALIGN_DATA={shared_data}")
    return path


@pytest.fixture(autouse=True)
def _small_torch_threads():
    try:
        import torch
    except ImportError:  # reading-only tests need no torch
        yield
        return
    torch.manual_seed(0)
    yield
