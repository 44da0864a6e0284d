"""The command line, end to end on the real data (skipped without NEUROALIGN_DATA)."""

import contextlib
import io
import os
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import rsatoolbox
import xarray as xr
from PIL import Image
from scipy.stats import spearmanr

import neuroalign
from neuroalign.cli import build_parser, main
from neuroalign.training import load_checkpoint

#: The real data the demo reads (its tests skip, naming the missing ones, without them).
DEMO_DATA = pytest.mark.shared_data(
    "cifar10_jpeg.tar.gz", "kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat",
    "kriegeskorte92/92_brainRDMs.mat",
)
SUBCOMMANDS = ["demo", "pretrain", "extract", "layers", "decorrelation", "probe", "rsa",
               "compare-models", "partition"]


@pytest.mark.parametrize("module", ["neuroalign", "neuroalign.cli"])
def test_help_lists_subcommands(module):
    """``python -m neuroalign`` (what ``torchrun … -m neuroalign`` runs) is the command."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("usage: neuroalign ")
    for name in SUBCOMMANDS:
        assert name in out


def test_python_m_neuroalign_returns_the_exit_code(tmp_path):
    missing = tmp_path / "missing.toml"
    run = subprocess.run([sys.executable, "-m", "neuroalign", "pretrain", str(missing), "--out",
                          str(tmp_path / "run")], capture_output=True, text=True)
    assert run.returncode == 2 and "missing.toml" in run.stderr


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help(name):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[name]
    for action in sub._actions:
        if action.dest != "help":
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


def test_import_needs_no_gpu():
    """Importing the package (and its training and extraction) touches no CUDA device."""
    code = ("import neuroalign, neuroalign.training, neuroalign.extraction, torch\n"
            "assert not torch.cuda.is_initialized()\n"
            "print(neuroalign.__version__)")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=env).stdout
    assert out.strip() == neuroalign.__version__


def test_pretrain_resume_and_overwrite_options(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "conv_mae_tiny"\ndataset = "folder"\nimage_size = 16\n'
                      'batch_size = 4\nsteps = 2\ncheckpoint_every = 1\nlog_every = 1\n'
                      'decorrelation_every = 0\ndevice = "cpu"\n')
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(images / f"{i}.png")
    args = ["pretrain", str(recipe), "--out", str(tmp_path / "run"), "--data-path", str(images)]
    assert main([*args, "--steps", "1"]) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt exists" in err and "--resume" in err and "--overwrite" in err
    assert main([*args, "--resume"]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    assert main([*args, "--overwrite", "--steps", "1"]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--resume", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_recipe_is_a_clean_error(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "conv_mae_tiny"\nmasking = "peripheral"\n')
    assert main(["pretrain", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "must be one of" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--out", str(out), "--steps", "6", "--batch-size", "32",
                     "--probe-train-per-class", "12", "--probe-test-per-class", "6"])
    assert code == 0
    (out.parent / f"{out.name}.stdout").write_text(printed.getvalue())
    return out


@DEMO_DATA
@pytest.mark.slow
def test_demo_writes_every_file(demo_run):
    for name in ["pretrain/checkpoint.pt", "pretrain/log.csv", "activations_kriegeskorte92.nc",
                 "results.nc", "rsa_layers.png", "rsa_layers.svg", "layer_results.png",
                 "layer_results.svg"]:
        assert (demo_run / name).is_file(), name
    assert not list(demo_run.rglob("*.partial"))


@DEMO_DATA
def test_demo_prints_the_time_of_each_stage(demo_run):
    printed = (demo_run.parent / f"{demo_run.name}.stdout").read_text()
    report = printed[printed.index("time per stage (measured):"):].splitlines()
    seconds = {}
    for line in report[1:6]:
        name, value, unit = line.rsplit(maxsplit=2)
        assert unit == "s"
        seconds[name.strip()] = float(value)
    assert list(seconds) == ["pretraining", "extraction", "analyses", "writing", "total"]
    assert all(v >= 0 for v in seconds.values())
    assert seconds["total"] == pytest.approx(sum(list(seconds.values())[:4]), abs=0.25)


@DEMO_DATA
def test_demo_results_explain_themselves(demo_run):
    """`ncdump -h results.nc` says what each variable is: CF long_name and units."""
    with netCDF4.Dataset(demo_run / "results.nc") as nc:
        for name, var in nc.variables.items():
            assert var.long_name.strip(), name
            if name not in ("layer", "subject"):
                assert var.units == "1", name
        assert "human IT" in nc["rsa_hit_spearman"].long_name
        assert "--quick" not in nc.getncattr("description")


def test_demo_settings_from_the_command_line(monkeypatch, tmp_path):
    """No options: the documented run (its numbers are compared across releases); --quick:
    the first look; options given with --quick override it."""
    from neuroalign.demo import DemoSettings

    seen = []
    monkeypatch.setattr("neuroalign.demo.run_demo", lambda out, s, **kw: seen.append(s))
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    assert main(["demo", "--out", str(tmp_path), "--quick", "--steps", "7", "--seed", "3"]) == 0
    assert seen[0] == DemoSettings() == DemoSettings(
        steps=400, batch_size=128, lr=1e-3, probe_train_per_class=200, probe_test_per_class=100,
        device="auto", seed=0, quick=False)
    assert seen[1] == DemoSettings(steps=40, batch_size=64, probe_train_per_class=20,
                                   probe_test_per_class=10, quick=True)
    assert (seen[2].steps, seen[2].seed, seen[2].batch_size, seen[2].quick) == (7, 3, 64, True)


@DEMO_DATA
def test_demo_refuses_a_folder_with_a_run_unless_overwrite(demo_run, capsys, monkeypatch):
    before = (demo_run / "results.nc").read_bytes()
    assert main(["demo", "--out", str(demo_run), "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "already holds a demo run" in err and "--overwrite" in err
    assert (demo_run / "results.nc").read_bytes() == before  # refused before touching anything
    ran = []
    monkeypatch.setattr("neuroalign.demo.demo_config", lambda s: ran.append(s) or 1 / 0)
    with pytest.raises(ZeroDivisionError):  # with --overwrite it goes on to pretraining
        main(["demo", "--out", str(demo_run), "--steps", "6", "--overwrite"])
    assert ran


@DEMO_DATA
@pytest.mark.slow
def test_demo_activation_file_opens_with_plain_netcdf4(demo_run):
    with netCDF4.Dataset(demo_run / "activations_kriegeskorte92.nc") as ds:
        ids = [str(s) for s in ds["stimulus_id"][:]]
        assert len(ids) == 92 and len(set(ids)) == 92
        for attr in ["model", "checkpoint_sha256", "seed", "schema_version"]:
            assert attr in ds.ncattrs(), attr
        act = ds["encoder/blocks/8/activation"]
        assert act.dimensions[0] == "presentation" and act.shape == (92, 128, 4, 4)
    with xr.open_datatree(demo_run / "activations_kriegeskorte92.nc") as tree:
        assert tree["encoder/blocks/0"]["activation"].shape == (92, 32, 16, 16)


@DEMO_DATA
@pytest.mark.slow
def test_demo_numbers_recomputed_independently(demo_run, shared_data):
    """The demo's RSA and decorrelation, recomputed with rsatoolbox and numpy from the file."""
    from neuroalign.data.brain import load_kriegeskorte_hit

    results = xr.load_dataset(demo_run / "results.nc")
    brain = load_kriegeskorte_hit()
    with netCDF4.Dataset(demo_run / "activations_kriegeskorte92.nc") as ds:
        ids = np.array([str(s) for s in ds["stimulus_id"][:]])
        layers = ds.getncattr("layers").split(",")
        acts = {name: np.asarray(ds[name.replace(".", "/") + "/activation"][:], dtype=np.float64)
                .reshape(92, -1) for name in layers}
    assert list(results.layer.values) == layers
    # brain RDMs: average the two sessions of each subject, in the file's stimulus order
    order = [list(brain.pattern_descriptors["stimulus_id"]).index(i) for i in ids]
    subjects = sorted(set(brain.rdm_descriptors["subject"]))
    mats = brain.get_matrices()[:, order][:, :, order]
    subj = np.array(brain.rdm_descriptors["subject"])
    per_subject = np.stack([mats[subj == s].mean(0) for s in subjects])
    iu = np.triu_indices(92, 1)
    for name, x in acts.items():
        rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method="correlation")
        model_vec = rdm.get_vectors()[0]
        rhos = [spearmanr(model_vec, m[iu]).statistic for m in per_subject]
        assert float(results["rsa_hit_spearman"].sel(layer=name)) == pytest.approx(np.mean(rhos), abs=1e-5)
        # decorrelation: z-score units (dropping constant ones), D x D correlation, off-diagonal
        keep = x.std(0, ddof=1) > 0
        z = (x[:, keep] - x[:, keep].mean(0)) / x[:, keep].std(0, ddof=1)
        c = z.T @ z / (92 - 1)
        off = c - np.diag(np.diag(c))
        L = (off**2).sum() / keep.sum()
        assert float(results["decorrelation_L"].sel(layer=name)) == pytest.approx(L, rel=1e-5)
        mean_abs = np.abs(off[np.triu_indices(keep.sum(), 1)]).mean()
        assert float(results["mean_abs_r"].sel(layer=name)) == pytest.approx(mean_abs, rel=1e-5)
    acc = results["probe_accuracy"].values
    assert np.all((acc >= 0) & (acc <= 1))
    lower, upper = float(results.noise_ceiling_lower), float(results.noise_ceiling_upper)
    assert 0 < lower < upper < 1


@pytest.mark.parametrize("module", [
    "neuroalign", "neuroalign.models", "neuroalign.training", "neuroalign.objectives",
    "neuroalign.views", "neuroalign.masking", "neuroalign.extraction", "neuroalign.activations",
    "neuroalign.analysis", "neuroalign.data", "neuroalign.workflows", "neuroalign.cli",
])
def test_each_module_imports_on_its_own(module):
    """Catches import cycles, which only show when a module is the first one imported."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)


def test_reading_activations_needs_no_torch(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, neuroalign\n"
        "from neuroalign.activations import ActivationWriter\n"
        f"p = {str(tmp_path / 'a.nc')!r}\n"
        "with ActivationWriter(p, attrs={'model': 'm'}) as w:\n"
        "    w.write_batch({'layer1': np.ones((2, 3), 'float32')}, ['a', 'b'])\n"
        "t = neuroalign.open_activations(p)\n"
        "print(t['layer1']['activation'].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "(2, 3)" in out.stdout


@DEMO_DATA
@pytest.mark.slow
def test_rsa_subcommand_with_bootstrap_and_layer_tests(demo_run, tmp_path, capsys):
    acts = demo_run / "activations_kriegeskorte92.nc"
    out = tmp_path / "rsa.nc"
    layers = ["encoder.blocks.0", "encoder.blocks.8"]
    assert main(["rsa", str(acts), "--layers", *layers, "--n-boot", "50", "--test", "bootstrap",
                 "--out", str(out), "--figure", str(tmp_path / "rsa.png")]) == 0
    text = capsys.readouterr().out
    assert "noise ceiling" in text and "encoder.blocks.0 − encoder.blocks.8" in text
    ds = xr.load_dataset(out)
    results = xr.load_dataset(demo_run / "results.nc")
    for layer in layers:  # the sub-command and the demo agree
        assert float(ds["mean"].sel(layer=layer)) == pytest.approx(
            float(results["rsa_hit_spearman"].sel(layer=layer)), abs=1e-10)
    assert (ds.ci_lo <= ds["mean"]).all() and (ds["mean"] <= ds.ci_hi).all()
    assert (tmp_path / "rsa.png").is_file()


@DEMO_DATA
@pytest.mark.slow
def test_compare_models_cka_and_rsa(demo_run, tmp_path):
    acts = demo_run / "activations_kriegeskorte92.nc"
    assert main(["compare-models", str(acts), "--compare", "cka", "--out", str(tmp_path / "cka.nc")]) == 0
    cka = xr.load_dataset(tmp_path / "cka.nc")["cka"]
    assert cka.shape == (9, 9)
    assert np.allclose(np.diag(cka.values), 1.0)
    assert np.allclose(cka.values, cka.values.T)
    # one entry against a plain feature-space formula
    with netCDF4.Dataset(acts) as ds:
        x = np.asarray(ds["encoder/blocks/0/activation"][:], np.float64).reshape(92, -1)
        y = np.asarray(ds["encoder/blocks/8/activation"][:], np.float64).reshape(92, -1)
    x, y = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    assert float(cka.sel(layer_a="encoder.blocks.0", layer_b="encoder.blocks.8")) == pytest.approx(expected, rel=1e-6)
    assert main(["compare-models", str(acts), "--compare", "spearman", "--out", str(tmp_path / "rsa.nc")]) == 0
    rsa = xr.load_dataset(tmp_path / "rsa.nc")
    assert np.allclose(np.diag(rsa[list(rsa.data_vars)[0]].values), 1.0)


@DEMO_DATA
@pytest.mark.slow
def test_partition_parts_sum_to_total(demo_run, tmp_path):
    acts = demo_run / "activations_kriegeskorte92.nc"
    out = tmp_path / "part.nc"
    assert main(["partition", f"{acts}:encoder.blocks.0", f"{acts}:encoder.blocks.8", "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    assert float(ds.commonality.sum()) == pytest.approx(float(ds.total_r2), abs=1e-10)
    assert ds.sizes["part"] == 3
