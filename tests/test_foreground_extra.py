"""rembg/onnxruntime are the optional extra ``neuroalign[foreground]``.

A plain install lacks them: everything but computing foreground maps works, and computing one
is a single error line naming the extra.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import setuptools

from neuroalign.data import foreground as fgmod
from neuroalign.data.foreground import (
    INSTALL_FOREGROUND,
    MissingExtraError,
    cache_key,
    foreground_maps,
)

ROOT = Path(__file__).resolve().parents[1]

# rembg, onnxruntime (and so their sub-modules) made unimportable, as on a plain install: a None
# in sys.modules makes `import` raise ModuleNotFoundError and importlib.util.find_spec return
# None (torch probes for onnxruntime that way; a finder raising ImportError would break it).
BLOCK = textwrap.dedent("""
    import sys
    sys.modules.update(rembg=None, onnxruntime=None)
""")


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "NEUROALIGN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def _setup_kwargs(monkeypatch) -> dict:
    """The keyword arguments setup.py passes to setuptools.setup."""
    seen: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(ROOT)
    code = (ROOT / "setup.py").read_text()
    exec(compile(code, str(ROOT / "setup.py"), "exec"), {"__file__": str(ROOT / "setup.py")})
    return seen


def test_rembg_is_an_extra_that_the_test_extra_pulls_in(monkeypatch):
    kw = _setup_kwargs(monkeypatch)
    assert not [r for r in kw["install_requires"] if "rembg" in r or "onnxruntime" in r]
    extras = kw["extras_require"]
    assert [r for r in extras["foreground"] if r.startswith("rembg[cpu]")]
    # the README installs .[test], and the suite covers foreground maps: CI keeps rembg
    assert set(extras["foreground"]) <= set(extras["test"])
    assert set(extras["foreground"]) <= set(extras["dev"])
    first_command = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[0]
    assert 'pip install -e ".[test]"' in first_command
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"' in ci and "export U2NET_HOME=" in ci


@pytest.mark.parametrize("missing", ["rembg", "onnxruntime"])
def test_computing_a_map_without_the_extra_is_one_line_naming_it(monkeypatch, tmp_path, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    for call in (lambda: foreground_maps(images, cache_dir=tmp_path, progress=False),
                 lambda: fgmod.rembg_session("u2netp")):
        with pytest.raises(MissingExtraError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert message.endswith('pip install "neuroalign[foreground]"') and INSTALL_FOREGROUND in message
        assert missing in message
        # no chained traceback, and the CLI's handler (ValueError) prints it as one line
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cached_maps_need_no_rembg(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "rembg", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 6, 5, 3), dtype=np.uint8)
    maps = rng.integers(0, 256, size=(3, 6, 5), dtype=np.uint8)
    for image, m in zip(images, maps, strict=True):
        np.save(tmp_path / f"{cache_key(image, 'u2netp')}.npy", m)
    assert np.array_equal(foreground_maps(images, cache_dir=tmp_path, progress=False), maps)


@pytest.mark.slow
def test_training_extraction_and_analyses_work_without_the_extra(tmp_path):
    code = """
        import numpy as np, torch
        import neuroalign, neuroalign.training, neuroalign.extraction, neuroalign.analysis
        import neuroalign.cli, neuroalign.views, neuroalign.data.foreground
        from neuroalign.training import PretrainConfig, pretrain, load_model
        from neuroalign.data.stimuli import StimulusSet
        from neuroalign.extraction import extract, image_transform
        from neuroalign.activations import open_activations
        from neuroalign.analysis import calc_rdm, decorrelation

        g = torch.Generator().manual_seed(0)
        images = (torch.rand(32, 3, 16, 16, generator=g) * 255).to(torch.uint8)
        cfg = PretrainConfig(model="conv_mae_tiny", steps=3, batch_size=8, log_every=1,
                             decorrelation_every=3, checkpoint_every=100, seed=1)
        ckpt = pretrain(cfg, "run", images=images, progress=False)
        model, _ = load_model(ckpt)
        stim = StimulusSet(stimulus_id=[f"s{i}" for i in range(10)],
                           images=images[:10].permute(0, 2, 3, 1).numpy(), name="toy")
        out = extract(model, stim, None, "acts.nc", transform=image_transform(16), batch_size=5,
                      progress=False)
        tree = open_activations(out)
        layer = [k for k in tree.groups if k != "/"][-1]
        da = tree[layer]["activation"]
        acts = da.values.reshape(10, -1)
        rdm = calc_rdm(acts, da["stimulus_id"].values)
        print("L", decorrelation(acts)["L"], "rdm", rdm.dissimilarities.shape)
        print("imported", [m for m in sys.modules if m.split(".")[0] in ("rembg", "onnxruntime")
                           and sys.modules[m] is not None])

        cfg = PretrainConfig(model="conv_mae_tiny", steps=3, batch_size=8, seed=1,
                             loss_region="foreground_weighted")
        try:
            pretrain(cfg, "fg", images=images, progress=False)
        except ImportError as err:
            print("fg error:", err)
    """
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "imported []" in lines
    assert any(line.startswith("L ") for line in lines)
    [fg] = [line for line in lines if line.startswith("fg error:")]
    assert fg.endswith(INSTALL_FOREGROUND)


def test_the_cli_reports_a_foreground_recipe_without_the_extra_in_one_line(tmp_path):
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(4):
        (images / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / "a" / f"{i}.png")
    recipe = tmp_path / "fg.toml"
    recipe.write_text(f'model = "conv_mae_tiny"\ndataset = "folder"\ndata_path = "{images}"\n'
                      'image_size = 16\nsteps = 2\nbatch_size = 2\nloss_region = "foreground_only"\n')
    result = _run(f"""
        from neuroalign.cli import main
        sys.exit(main(["pretrain", {str(recipe)!r}, "--out", "run"]))
    """, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"neuroalign: error: {errors[0].split('error: ', 1)[1]}"]
    assert errors[0].endswith(INSTALL_FOREGROUND)
    assert "Traceback" not in result.stderr
