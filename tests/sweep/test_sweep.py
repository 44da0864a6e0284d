"""``neuroalign sweep``: 3 random-weight models × 2 brain sets (Kriegeskorte human IT and Cichy
IT, both on the 92 images) with RSA — run whole, interrupted and rerun, task by task from the
printed commands, and on a dask.distributed client — and the schema's errors."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroalign import sweep as sweeps
from neuroalign import workflows
from neuroalign.activations import flatten, layer_names, open_activations
from neuroalign.cli import main

ROOT = Path(__file__).resolve().parents[2]
SWEEP = """
out = "out"

[extraction]
batch_size = 46   # two batches of the 92 images: an extraction can be stopped between them
device = "cpu"

[[models]]
name = "resnet18"
spec = "torchvision/resnet18"
image_size = 64
layers = ["layer1", "layer2", "layer3", "layer4"]
pooling = "avg"

[[models]]
name = "alexnet"
spec = "torchvision/alexnet"
image_size = 64
layers = ["features.2", "features.5", "features.12", "classifier.5"]
pooling = "avg"

[[models]]
spec = "conv_mae"
image_size = 64
layers = ["encoder.blocks.2", "encoder.blocks.5", "encoder.blocks.8"]
pooling = 2

[[brains]]
name = "hit"
data = "kriegeskorte-hit"
stimuli = "kriegeskorte92"

[[brains]]
data = "cichy-it"
stimuli = "kriegeskorte92"

[[analyses]]
kind = "rsa"
compare_method = "spearman"
"""
RSA_TASKS = [f"rsa/{m}/{b}" for m in ("resnet18", "alexnet", "conv_mae")
             for b in ("hit", "cichy-it")]


def _write(folder: Path, text: str = SWEEP) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.toml"
    path.write_text(text)
    return path


def _table(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def _same_table(a: xr.Dataset, b: xr.Dataset) -> None:
    """Values and labels equal (the attributes name the folders, which differ)."""
    xr.testing.assert_equal(a.drop_attrs(), b.drop_attrs())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_data):
    """The uninterrupted run, through the Python API on the synchronous scheduler."""
    path = _write(tmp_path_factory.mktemp("reference"))
    report = sweeps.run_sweep(path, scheduler="sync", progress=False)
    return path, report


def test_reference_run(reference):
    path, report = reference
    out = path.parent / "out"
    assert report.counts() == {"done": 9}
    # one extraction per model, shared by both brain sets recorded on the 92 images
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("activations/*/*.nc")) == [
        "activations/alexnet/kriegeskorte92.nc", "activations/conv_mae/kriegeskorte92.nc",
        "activations/resnet18/kriegeskorte92.nc"]
    ds = _table(out / "results.nc")
    assert dict(ds["value"].sizes) == {"model": 3, "layer": 4, "brain": 2, "metric": 4}
    assert list(ds["model"].values) == ["resnet18", "alexnet", "conv_mae"]
    assert list(ds["brain"].values) == ["hit", "cichy-it"]
    assert list(ds["metric"].values) == ["rsa.mean", "rsa.sem", "rsa.noise_ceiling_lower",
                                         "rsa.noise_ceiling_upper"]
    assert list(ds["layer_name"].sel(model="alexnet").values) == [
        "features.2", "features.5", "features.12", "classifier.5"]
    # conv_mae has 3 layers: the fourth position is padding
    assert list(ds["layer_name"].sel(model="conv_mae").values)[3] == ""
    assert np.isnan(ds["value"].sel(model="conv_mae", layer=3)).all()
    np.testing.assert_allclose(ds["relative_depth"].sel(model="conv_mae").values[:3], [0, 0.5, 1])
    assert ds.attrs["missing_tasks"] == "none" and ds.attrs["n_results"] == 6
    for brain in ("hit", "cichy-it"):  # a noise ceiling per brain, the same for every model
        nc = ds["value"].sel(brain=brain, metric=["rsa.noise_ceiling_lower",
                                                  "rsa.noise_ceiling_upper"])
        lower, upper = np.unique(nc.isel(metric=0).dropna("layer", how="all").values), \
            np.unique(nc.isel(metric=1).dropna("layer", how="all").values)
        assert len(lower[np.isfinite(lower)]) == 1 and len(upper[np.isfinite(upper)]) == 1
        assert 0 < lower[np.isfinite(lower)][0] < upper[np.isfinite(upper)][0] < 1
    assert (out / "summary.png").stat().st_size > 10_000 and (out / "summary.svg").is_file()


def test_merged_cell_equals_rsa_from_file(reference):
    """One cell of results.nc against workflows.rsa_from_file on the same activation file."""
    path, _ = reference
    out = path.parent / "out"
    acts = out / "activations" / "conv_mae" / "kriegeskorte92.nc"
    direct = workflows.rsa_from_file(acts, "cichy-it", compare_method="spearman")
    merged = _table(out / "results.nc")["value"].sel(model="conv_mae", brain="cichy-it")
    layers = list(direct["layer"].values)
    assert layers == ["encoder.blocks.2", "encoder.blocks.5", "encoder.blocks.8"]
    for variable in ("mean", "sem"):
        np.testing.assert_array_equal(merged.sel(metric=f"rsa.{variable}").values[:3],
                                      direct[variable].values)
    for variable in ("noise_ceiling_lower", "noise_ceiling_upper"):
        np.testing.assert_array_equal(merged.sel(metric=f"rsa.{variable}").values[:3],
                                      float(direct[variable]))
    # and the mean is the mean over the 15 subjects of a plain Spearman of RDM vectors
    from scipy.stats import spearmanr

    from neuroalign.data.registry import load_brain_rdms
    from neuroalign.workflows import layer_rdms_from_file

    rdms, _ = load_brain_rdms("cichy-it")
    model = layer_rdms_from_file(acts, ["encoder.blocks.8"])
    order = [list(model.pattern_descriptors["stimulus_id"]).index(s)
             for s in rdms.pattern_descriptors["stimulus_id"]]
    m = model.get_matrices()[0][np.ix_(order, order)]
    iu = np.triu_indices(92, 1)
    plain = np.mean([spearmanr(m[iu], b[iu])[0] for b in rdms.get_matrices()])
    np.testing.assert_allclose(merged.sel(metric="rsa.mean").values[2], plain, rtol=1e-10)


def _stop_extraction(monkeypatch, model_name: str) -> None:
    """SIGINT to this process during the first forward pass of ``model_name``'s extraction,
    as a Ctrl-C: extract writes that batch to the .partial, keeps it, and raises
    Interrupted."""
    from neuroalign.models import specs

    load_model = specs.load_model

    def loading(spec, *args, **kwargs):
        loaded = load_model(spec, *args, **kwargs)
        if model_name in spec:
            calls = []

            def hook(module, inputs, output):
                calls.append(1)
                if len(calls) == 1:
                    signal.raise_signal(signal.SIGINT)
            loaded.model.register_forward_hook(hook)
        return loaded

    monkeypatch.setattr(specs, "load_model", loading)


def _count_rsa(monkeypatch, fail: tuple[str, str] | None = None) -> list:
    """Count rsa_from_file calls (activation file, brain); raise for ``fail``
    (model, brain data)."""
    calls = []
    rsa = workflows.rsa_from_file

    def counted(path, brain, *args, **kwargs):
        calls.append((Path(path).parent.name, brain))
        if fail is not None and (Path(path).parent.name, brain) == fail:
            raise RuntimeError("injected failure")
        return rsa(path, brain, *args, **kwargs)

    monkeypatch.setattr(workflows, "rsa_from_file", counted)
    return calls


def test_interrupted_and_failed_sweep_reruns_to_the_same_table(reference, tmp_path, monkeypatch,
                                                              capsys):
    path = _write(tmp_path)
    out = tmp_path / "out"
    # 1. Ctrl-C during alexnet's extraction: its first batch is kept in a .partial
    with monkeypatch.context() as m:
        _stop_extraction(m, "alexnet")
        with pytest.raises(KeyboardInterrupt):
            sweeps.run_sweep(path, scheduler="sync", progress=False)
    partial = out / "activations" / "alexnet" / "kriegeskorte92.nc.partial"
    assert partial.is_file() and not partial.with_suffix("").exists()
    tree = open_activations(partial, chunks=None)
    assert tree.sizes["presentation"] == 46
    tree.close()
    assert not (out / "results.nc").exists()
    assert main(["sweep", str(path), "--list"]) == 0
    listed = dict(line.split("\t")[:2] for line in capsys.readouterr().out.splitlines())
    assert listed["extract/alexnet/kriegeskorte92"] == "interrupted (resumes)"
    assert listed["rsa/alexnet/hit"] == "to do"

    # 2. rerun from the command line with one task failing: the others finish, exit code 2
    with monkeypatch.context() as m:
        calls = _count_rsa(m, fail=("alexnet", "cichy-it"))
        code = main(["sweep", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert ("rsa/alexnet/cichy-it (model alexnet, brain cichy-it, analysis rsa): failed: "
            "RuntimeError: injected failure") in err
    assert "1 of " in err
    done_before = {(m, b) for m, b in calls}
    assert ("alexnet", "cichy-it") in done_before
    table = _table(out / "results.nc")
    assert table.attrs["missing_tasks"] == "rsa/alexnet/cichy-it"
    assert np.isnan(table["value"].sel(model="alexnet", brain="cichy-it")).all()
    # the resumed extraction equals the uninterrupted one, value for value
    ref_acts = reference[0].parent / "out" / "activations" / "alexnet" / "kriegeskorte92.nc"
    new_acts = out / "activations" / "alexnet" / "kriegeskorte92.nc"
    a, b = open_activations(ref_acts, chunks=None), open_activations(new_acts, chunks=None)
    try:
        assert layer_names(a) == layer_names(b)
        for layer in layer_names(a):
            np.testing.assert_array_equal(flatten(a, layer).values, flatten(b, layer).values)
    finally:
        a.close()
        b.close()

    # 3. rerun: only the failed task runs; finished outputs are not rewritten
    outputs = [*out.glob("activations/*/*.nc"), *out.glob("results/*/*/*.nc")]
    assert len(outputs) == 3 + 5
    mtimes = {p: p.stat().st_mtime_ns for p in outputs}
    with monkeypatch.context() as m:
        calls = _count_rsa(m)
        report = sweeps.run_sweep(path, scheduler="sync", progress=False)
    assert calls == [("alexnet", "cichy-it")]
    assert report.counts() == {"kept": 8, "done": 1}
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes
    _same_table(_table(out / "results.nc"), _table(reference[0].parent / "out" / "results.nc"))

    # 4. other settings for a model: its finished activation file is not silently reused
    changed = _write(tmp_path, SWEEP.replace("image_size = 64", "image_size = 48", 1))
    assert main(["sweep", str(changed), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"extract/resnet18/kriegeskorte92 (model resnet18, stimuli kriegeskorte92): failed: "
            f"ValueError: {out}/activations/resnet18/kriegeskorte92.nc was extracted with other "
            "settings (model.image_size: 64 in the file, 48 now); delete it") in err
    assert "rsa/resnet18/hit (model resnet18, brain hit, analysis rsa): blocked" in err
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes


def test_printed_commands_run_one_by_one(reference, tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["sweep", str(path), "--print-commands"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    argvs = [shlex.split(line) for line in lines]
    assert all(argv[:3] == ["neuroalign", "sweep", str(path.absolute())] for argv in argvs)
    tasks = [argv[4] for argv in argvs[:-1]]
    assert tasks == ["extract/resnet18/kriegeskorte92", "extract/alexnet/kriegeskorte92",
                     "extract/conv_mae/kriegeskorte92", *RSA_TASKS]
    assert argvs[-1][3:] == ["--merge"]
    # an analysis before its extraction: an error naming the extraction to run
    assert main(argvs[3][1:]) == 2
    err = capsys.readouterr().err
    assert "extract/resnet18/kriegeskorte92" in err and "missing" in err
    for argv in argvs[:-1]:
        assert main([*argv[1:], "--no-progress"]) == 0, argv
    # the merge as its own process, as an array job's last step would run it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "neuroalign", *argvs[-1][1:]], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "missing: none" in done.stdout
    _same_table(_table(tmp_path / "out" / "results.nc"),
                _table(reference[0].parent / "out" / "results.nc"))


def test_distributed_client_runs_the_unfinished_task(reference, tmp_path):
    """A dask.distributed client (in-process workers): the tasks go to it; only the task
    whose result was removed is computed, and the table is the same."""
    distributed = pytest.importorskip("distributed")
    shutil.copytree(reference[0].parent, tmp_path / "run")
    path = tmp_path / "run" / "sweep.toml"
    (tmp_path / "run" / "out" / "results" / "rsa" / "resnet18" / "hit.nc").unlink()
    (tmp_path / "run" / "out" / "results.nc").unlink()
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=":0") as client:
        with distributed.get_task_stream(client) as stream:
            report = sweeps.run_sweep(path, progress=False)  # on the active client
    assert report.counts() == {"kept": 8, "done": 1}
    assert "sweep-rsa/resnet18/hit" in {str(t["key"]) for t in stream.data}
    _same_table(_table(tmp_path / "run" / "out" / "results.nc"),
                _table(reference[0].parent / "out" / "results.nc"))


@pytest.mark.parametrize(("change", "message"), [
    (("[[models]]\nname = \"alexnet\"", "[[models]]\nname = \"alexnet\"\nimag_size = 32"),
     r"models\[1\]\.imag_size: unknown key \(did you mean 'image_size'\?\)"),
    (("image_size = 64\nlayers = [\"layer1\"", "image_size = \"64\"\nlayers = [\"layer1\""),
     r"models\[0\]\.image_size: must be an integer; got '64'"),
    (("spec = \"conv_mae\"\n", ""), r"models\[2\]\.spec: missing"),
    (("data = \"cichy-it\"", "data = \"cichy-itt\""),
     r"brains\[1\]\.data: 'cichy-itt' is neither .* Did you mean 'cichy-it'\?"),
    (("stimuli = \"kriegeskorte92\"\n\n[[brains]]", "stimuli = \"kriegeskorte-92\"\n\n[[brains]]"),
     r"brains\[0\]\.stimuli: 'kriegeskorte-92' is neither a registered stimulus set"),
    (("kind = \"rsa\"", "kind = \"rsa\"\nbrains = [\"hit\", \"nope\"]"),
     r"analyses\[0\]\.brains\[1\]: no brain named 'nope'"),
    (("kind = \"rsa\"", "kind = \"cka\""), r"analyses\[0\]\.kind: must be one of"),
    (("kind = \"rsa\"", "kind = \"decorrelation\""),
     r"analyses\[0\]\.compare_method: unknown key"),
    (("kind = \"rsa\"", "kind = \"encoding\"\ncompare_method = 1\n[[analyses]]\nkind = \"rsa\""),
     r"analyses\[0\]\.compare_method: unknown key"),
    (("kind = \"rsa\"\ncompare_method = \"spearman\"", "kind = \"encoding\""),
     r"brains\[0\]\.data: 'kriegeskorte-hit' is neither brain data the analyses \['encoding'\]"),
    (("name = \"alexnet\"", "name = \"resnet18\""), r"models\[1\]\.name: 'resnet18' is used twice"),
    (("data = \"cichy-it\"", "data = \"rdms/cichy.hdf5\""),
     r"brains\[1\]\.data: 'rdms/cichy.hdf5' is neither .* nor an existing file"),
    (("out = \"out\"", "output = \"out\""), r"^[^:]*sweep\.toml: output: unknown key"),
    (("pooling = 2", "pooling = \"max\""), r"models\[2\]\.pooling: must be 'none', 'avg'"),
    (("out = \"out\"", "out = \"out\"\n[[models"), r"not valid TOML"),
])
def test_bad_sweep_file_names_the_key(tmp_path, capsys, change, message):
    old, new = change
    assert old in SWEEP
    path = _write(tmp_path, SWEEP.replace(old, new, 1))
    with pytest.raises(sweeps.SweepConfigError, match=message):
        sweeps.load_sweep(path)
    assert main(["sweep", str(path), "--list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuroalign: error: {path}")


def test_example_file_expands_to_its_tasks():
    sweep = sweeps.load_sweep(ROOT / "docs" / "examples" / "sweep.toml")
    ids = [t.id for t in sweep.tasks()]
    assert len(ids) == len(set(ids))
    assert ids[0].startswith("extract/") and not any(
        i.startswith("extract/") for i in ids[len([i for i in ids if i.startswith("extract/")]):])
    assert {t.kind for t in sweep.tasks()} == {"extract", "rsa", "encoding", "decorrelation"}


ENCODING_SWEEP = """
out = "out"

[[models]]
spec = "torchvision/resnet18"
image_size = 32
layers = ["layer2", "layer4"]
pooling = "avg"
device = "cpu"

[[brains]]
data = "cowley-v4"        # responses for encoding, their RDMs for RSA
stimuli = "cowley-v4"

[[analyses]]
kind = "encoding"
folds = 3
alphas = [1.0, 100.0, 10000.0]
n_splits = 10

[[analyses]]
kind = "decorrelation"

[[analyses]]
name = "rsa-v4"
kind = "rsa"
"""


@pytest.mark.shared_data("cowley_v4")
def test_encoding_and_decorrelation_cells_equal_their_workflows(tmp_path, shared_data):
    path = _write(tmp_path, ENCODING_SWEEP)
    report = sweeps.run_sweep(path, scheduler="sync", progress=False)
    assert [o.task.id for o in report.outcomes] == [
        "extract/resnet18/cowley-v4", "encoding/resnet18/cowley-v4",
        "decorrelation/resnet18/cowley-v4", "rsa-v4/resnet18/cowley-v4"]
    ds = report.results
    assert list(ds["layer_name"].sel(model="resnet18").values) == ["layer2", "layer4"]
    cell = ds["value"].sel(model="resnet18", brain="cowley-v4")
    acts = tmp_path / "out" / "activations" / "resnet18" / "cowley-v4.nc"
    encoding = workflows.encoding_from_file(acts, "cowley-v4", folds=3,
                                            alphas=[1.0, 100.0, 10000.0], n_splits=10)
    for variable in ("r", "r_corrected", "r2"):
        np.testing.assert_allclose(cell.sel(metric=f"encoding.{variable}_median").values,
                                   np.nanmedian(encoding[variable].values, axis=1), rtol=1e-12)
    decorrelation = workflows.decorrelation_from_file(acts)
    np.testing.assert_array_equal(cell.sel(metric="decorrelation.L").values,
                                  decorrelation["L"].values)
    # one RDM of repeat averages: RSA without a noise ceiling, NaN in the table
    assert np.isnan(cell.sel(metric="rsa-v4.noise_ceiling_lower").values).all()
    assert np.isfinite(cell.sel(metric="rsa-v4.mean").values).all()
    assert report.figure[0].stat().st_size > 10_000


def test_brain_data_files_are_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "rdms").mkdir()
    (tmp_path / "rdms" / "cichy.hdf5").write_bytes(b"")
    sub = tmp_path / "sweeps"
    path = _write(sub, SWEEP.replace('data = "cichy-it"', 'data = "../rdms/cichy.hdf5"'))
    sweep = sweeps.load_sweep(path)
    assert sweep.brain("cichy").data == str(tmp_path / "rdms" / "cichy.hdf5")
    assert sweep.out == sub / "out"
    assert "rsa/alexnet/cichy" in {t.id for t in sweep.tasks()}
