"""Foreground maps go over no network when the model file is present.

Python's socket functions are guarded (any connection or host-name lookup is recorded and
refused), and, where strace is installed, a subprocess's connect() system calls are traced, so
that connections from native code (onnxruntime's telemetry) are seen too.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neuroalign.data import foreground as fgmod
from neuroalign.data.foreground import foreground_maps

pytest.importorskip("rembg", reason="rembg is the extra neuroalign[foreground]")

ROOT = Path(__file__).resolve().parents[2]
INDICES = [0, 40, 60]  # a face, a body part, an inanimate object
SHARED = pytest.mark.shared_data(
    "kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat", "cichy92/images/image_01.jpg",
    "u2net/u2netp.onnx")


@pytest.fixture
def network_calls(monkeypatch):
    """Every connection or host-name lookup through Python's socket module, each refused."""
    calls = []

    def refuse(what):
        def guard(*args, **kwargs):
            calls.append((what, args[1:] if what.startswith("socket.") else args))
            raise OSError(f"network use in a test: {what}{args}")
        return guard

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
                 "gethostbyaddr"):
        monkeypatch.setattr(socket, name, refuse(name))
    return calls


@pytest.fixture
def session_events(monkeypatch):
    """The order of onnxruntime's telemetry switch-off and session creations."""
    import onnxruntime

    events = []
    disable, session = onnxruntime.disable_telemetry_events, onnxruntime.InferenceSession

    def disable_spy():
        events.append("telemetry off")
        disable()

    def session_spy(*args, **kwargs):
        events.append("session")
        return session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", disable_spy)
    monkeypatch.setattr(onnxruntime, "InferenceSession", session_spy)
    return events


def _images(name):
    from neuroalign.data.stimulus_sets import load_cichy92, load_kriegeskorte92

    loader = {"kriegeskorte92": load_kriegeskorte92, "cichy92": load_cichy92}[name]
    return loader().subset(INDICES)


@SHARED
@pytest.mark.parametrize("stimuli", ["kriegeskorte92", "cichy92"])
def test_maps_of_real_images_use_no_network(shared_data, stimuli, tmp_path, monkeypatch,
                                            network_calls, session_events, capsys):
    images = _images(stimuli)  # local files only: under the guard too
    monkeypatch.setenv("U2NET_HOME", str(shared_data / "u2net"))
    maps = foreground_maps(images, "u2netp", cache_dir=tmp_path, progress=False)
    assert network_calls == []
    assert session_events == ["telemetry off", "session"]
    assert "downloads" not in capsys.readouterr().err
    # the maps were computed (not read from a cache): object in the centre, background around
    assert len(list(tmp_path.glob("*.npy"))) == len(INDICES)
    assert maps.shape == (3, 175, 175) and maps.dtype == np.uint8
    for m in maps:
        corners = np.concatenate([m[:15, :15], m[:15, -15:], m[-15:, :15], m[-15:, -15:]])
        assert m[70:105, 70:105].mean() > 200 and corners.mean() < 30


def test_a_missing_model_file_is_announced_then_downloaded(tmp_path, monkeypatch, network_calls,
                                                           capsys):
    # the guard sees rembg's download attempt: it would see any other connection too
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"u2netp\.onnx.*could not be downloaded") as info:
        fgmod.rembg_session("u2netp")
    assert str(tmp_path) in str(info.value)
    assert network_calls, "rembg tried no download"
    err = capsys.readouterr().err
    assert f"rembg model u2netp.onnx not found in {tmp_path}: rembg downloads it" in err


def test_remote_sessions_are_refused():
    from rembg.sessions import sessions_class

    remote = [sc.name() for sc in sessions_class if not getattr(sc, "is_local", lambda: True)()]
    for name in remote:
        with pytest.raises(ValueError, match="remote service"):
            fgmod.rembg_session(name)


@SHARED
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_no_connect_system_call_from_native_code(shared_data, tmp_path):
    code = textwrap.dedent(f"""
        import socket
        from neuroalign.data.foreground import foreground_maps
        from neuroalign.data.stimulus_sets import load_kriegeskorte92
        images = load_kriegeskorte92().subset({INDICES})
        maps = foreground_maps(images, "u2netp", cache_dir={str(tmp_path / "fg")!r}, progress=False)
        print("maps", maps.shape)
        try:  # a known connection: strace must see it
            socket.create_connection(("127.0.0.1", 9), timeout=1).close()
        except OSError:
            pass
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), U2NET_HOME=str(shared_data / "u2net"),
               NEUROALIGN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    trace = tmp_path / "trace.txt"
    result = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace),
                             sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "maps (3, 175, 175)" in result.stdout
    connects = [line for line in trace.read_text().splitlines() if "connect(" in line]
    inet = [line for line in connects if re.search(r"AF_INET6?\b", line)]
    assert len(inet) == 1 and 'inet_addr("127.0.0.1")' in inet[0] and "htons(9)" in inet[0], connects
    # no name resolution either (nscd, systemd-resolved's socket)
    assert not [line for line in connects if "nscd" in line or "resolve" in line], connects
