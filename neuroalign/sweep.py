"""Sweeps: models × brain sets × analyses from one TOML file, run as dask tasks.

A sweep file names models (specs with their extraction settings), brain sets (registered
names or files, each with the stimuli it was recorded on), analyses (``rsa``, ``encoding``,
``decorrelation``: the file-level workflows of :mod:`neuroalign.workflows`) and an output
folder; `load_sweep` reads and checks it (a `SweepConfigError` names the bad key). It expands
to `Task` s:

- one extraction per (model, stimulus set) that an analysis needs, written to
  ``OUT/activations/MODEL/STIMULI.nc`` by :func:`neuroalign.extraction.extract` with
  ``resume=True`` (an interrupted ``.partial`` is continued);
- one analysis per (analysis, model, brain set) — per stimulus set for ``decorrelation``,
  which needs no brain data — written to ``OUT/results/ANALYSIS/MODEL/BRAIN.nc`` by
  :func:`neuroalign.workflows.save_results` (a temporary name, then a rename).

A task whose output exists with the same settings (its ``sweep_config`` attribute) is not
run again. `run_sweep` runs the tasks as a dask graph on the scheduler asked for (the active
one by default: a ``dask.distributed`` client if one exists), or one at a time
(`run_task`, ``neuroalign sweep FILE --task ID``: what `sweep_commands` prints for an array
job); a task that fails is reported with its model, brain set and analysis while the others
finish. `merge_results` gathers the finished results into one ``OUT/results.nc`` — a
``value`` array over ``model × layer × brain × metric`` — and `plot_sweep` draws its summary
figure. See docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ANALYSIS_KINDS",
    "Sweep",
    "SweepConfigError",
    "SweepFailed",
    "SweepReport",
    "Task",
    "TaskOutcome",
    "is_finished",
    "load_sweep",
    "merge_results",
    "plot_sweep",
    "run_sweep",
    "run_task",
    "sweep_commands",
]

#: The analyses a sweep runs: kind -> the workflow in words.
ANALYSIS_KINDS = {
    "rsa": "workflows.rsa_from_file: RSA of each layer against brain RDMs, with noise ceiling",
    "encoding": "workflows.encoding_from_file: cross-validated ridge to neuron/voxel responses",
    "decorrelation": "workflows.decorrelation_from_file: decorrelation L, mean |r|, "
                     "participation ratio (per stimulus set; needs no brain data)",
}
#: The variable a figure panel shows per analysis kind (the first one present).
HEADLINE = {"rsa": ("mean",), "encoding": ("r_corrected_median", "r_median"),
            "decorrelation": ("L",)}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class SweepConfigError(ValueError):
    """A sweep file that cannot be run; the message names the file and the key."""


class SweepFailed(ValueError):
    """Some tasks of a sweep failed (the others finished); ``report`` has every outcome."""

    def __init__(self, report: SweepReport):
        self.report = report
        lines = [f"{len(report.failed)} of {len(report.outcomes)} sweep tasks failed "
                 "(rerun the same command to retry them; finished tasks are kept):"]
        lines += [f"  {o.message}" for o in report.failed]
        super().__init__("\n".join(lines))


# ----------------------------------------------------------------------------- the schema

def _fail(where: str, text: str) -> SweepConfigError:
    return SweepConfigError(f"{where}: {text}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str(choices: Sequence[str] | None = None):
    def check(value, where):
        if not isinstance(value, str) or not value.strip():
            raise _fail(where, f"must be a non-empty string; got {value!r}")
        if choices is not None and value not in choices:
            raise _fail(where, f"must be one of {list(choices)}; got {value!r}")
        return value
    return check


def _int(minimum: int | None = None):
    def check(value, where):
        if not _is_int(value):
            raise _fail(where, f"must be an integer; got {value!r}")
        if minimum is not None and value < minimum:
            raise _fail(where, f"must be ≥ {minimum}; got {value}")
        return value
    return check


def _bool(value, where):
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false; got {value!r}")
    return value


def _floats(length: int | None = None):
    def check(value, where):
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise _fail(where, f"must be a list of numbers; got {value!r}")
        if length is not None and len(value) != length:
            raise _fail(where, f"must have {length} numbers; got {len(value)}")
        return tuple(float(v) for v in value)
    return check


def _names(value, where):
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise _fail(where, f"must be a name or a list of names; got {value!r}")
    return tuple(value)


def _layers(value, where):
    if isinstance(value, str) and value in ("all", "blocks"):
        return value
    return _names(value, where)


def _pooling(value, where):
    if value == "none":
        return None
    if value == "avg" or (_is_int(value) and value > 0):
        return value
    raise _fail(where, f"must be 'none', 'avg' or a positive integer k (k×k grid); got {value!r}")


#: Every key of each table: key -> check (None: required).
MODEL_KEYS: dict[str, Callable] = {
    "name": _str(), "spec": _str(), "weights": _str(), "seed": _int(0),
    "image_size": _int(1), "mean": _floats(3), "std": _floats(3), "layers": _layers,
    "pooling": _pooling, "tokens": _str(["all", "cls", "patches", "mean"]),
    "projection": _str(["random", "pca"]), "n_components": _int(1), "batch_size": _int(1),
    "dtype": _str(["float32", "float16"]), "device": _str(),
}
BRAIN_KEYS: dict[str, Callable] = {
    "name": _str(), "data": _str(), "stimuli": _str(), "stimulus_ids": _str(),
}
ANALYSIS_KEYS: dict[str, dict[str, Callable]] = {
    "rsa": {"rdm_method": _str(["correlation", "cosine", "euclidean"]),
            "compare_method": _str(), "pool_sessions": _str(["rdms", "similarities"]),
            "n_boot": _int(0), "resample": _str(["stimuli", "subjects", "both"]),
            "seed": _int(0), "test": _str(["bootstrap", "ttest"]), "chunk_size": _int(1)},
    "encoding": {"folds": _int(2), "alphas": _floats(), "seed": _int(0), "n_splits": _int(1),
                 "stream_kernels": _bool, "device": _str()},
    "decorrelation": {"n_boot": _int(0), "seed": _int(0), "chunk_size": _int(1)},
}
_COMMON_ANALYSIS = {"name": _str(), "kind": _str(list(ANALYSIS_KINDS)), "models": _names,
                    "brains": _names}
TOP_KEYS = ("out", "models", "brains", "analyses", "extraction")
#: Defaults of the ``[extraction]`` table (each model may override them).
EXTRACTION_DEFAULTS = {"batch_size": 64, "dtype": "float32", "device": "auto"}


def _check_keys(table, allowed: Sequence[str], where: str) -> None:
    if not isinstance(table, dict):
        raise _fail(where, f"must be a table; got {table!r}")
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(f"{where}.{key}" if where else key,
                        f"unknown key{hint}; the keys here are {sorted(allowed)}")


def _table(table: dict, schema: dict[str, Callable], where: str, required: Sequence[str]) -> dict:
    _check_keys(table, list(schema), where)
    for key in required:
        if key not in table:
            raise _fail(f"{where}.{key}", "missing (required)")
    return {key: schema[key](value, f"{where}.{key}") for key, value in table.items()}


def _label(text: str) -> str:
    """A name usable in file names and task ids, from a spec or a folder."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-.") or "unnamed"


def _check_name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise _fail(where, f"{name!r} must be letters, digits and _ . + - (it names files and "
                           "task ids)")
    return name


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One ``[[models]]`` table: a spec and how to extract it (see ``neuroalign extract``)."""

    name: str
    spec: str
    weights: str | None = None
    seed: int = 0
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layers: str | tuple[str, ...] | None = None
    pooling: str | int | None = None
    tokens: str = "all"
    projection: str | None = None
    n_components: int | None = None
    batch_size: int = 64
    dtype: str = "float32"
    device: str = "auto"


@dataclasses.dataclass(frozen=True)
class BrainEntry:
    """One ``[[brains]]`` table: brain data (a registered name or a file) and its stimuli."""

    name: str
    data: str
    stimuli: str
    stimulus_ids: str | None = None

    @property
    def stimuli_label(self) -> str:
        return _label(self.stimuli if not Path(self.stimuli).is_dir() else Path(self.stimuli).name)


@dataclasses.dataclass(frozen=True)
class AnalysisEntry:
    """One ``[[analyses]]`` table: a kind, its options, the models and brain sets it covers."""

    name: str
    kind: str
    models: tuple[str, ...]
    brains: tuple[str, ...]
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work: an extraction (``kind='extract'``) or an analysis.

    ``id``: ``extract/MODEL/STIMULI``, ``ANALYSIS/MODEL/BRAIN`` or, for decorrelation,
    ``ANALYSIS/MODEL/STIMULI``; ``path``: the file it writes; ``needs``: the extraction it
    reads (analyses)."""

    id: str
    kind: str
    model: str
    stimuli: str
    path: Path
    brain: str | None = None
    analysis: str | None = None
    needs: str | None = None

    def describe(self) -> str:
        parts = [f"model {self.model}"]
        parts.append(f"brain {self.brain}" if self.brain else f"stimuli {self.stimuli}")
        if self.analysis:
            parts.append(f"analysis {self.analysis}")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A checked sweep file: its entries, output folder and tasks (`tasks`)."""

    path: Path
    out: Path
    models: tuple[ModelEntry, ...]
    brains: tuple[BrainEntry, ...]
    analyses: tuple[AnalysisEntry, ...]
    out_given: bool = False  # the output folder was given apart from the file (--out)

    def model(self, name: str) -> ModelEntry:
        return next(m for m in self.models if m.name == name)

    def brain(self, name: str) -> BrainEntry:
        return next(b for b in self.brains if b.name == name)

    def analysis(self, name: str) -> AnalysisEntry:
        return next(a for a in self.analyses if a.name == name)

    def activation_path(self, model: str, stimuli: str) -> Path:
        return self.out / "activations" / model / f"{stimuli}.nc"

    def tasks(self) -> list[Task]:
        """Every task, the extractions first, each once."""
        extractions: dict[str, Task] = {}
        analyses: dict[str, Task] = {}
        for a in self.analyses:
            for model in a.models:
                for brain in map(self.brain, a.brains):
                    stimuli = brain.stimuli_label
                    ext = f"extract/{model}/{stimuli}"
                    extractions.setdefault(ext, Task(ext, "extract", model, stimuli,
                                                     self.activation_path(model, stimuli)))
                    target = stimuli if a.kind == "decorrelation" else brain.name
                    tid = f"{a.name}/{model}/{target}"
                    analyses.setdefault(tid, Task(
                        tid, a.kind, model, stimuli,
                        self.out / "results" / a.name / model / f"{target}.nc",
                        brain=None if a.kind == "decorrelation" else brain.name,
                        analysis=a.name, needs=ext))
        return [*extractions.values(), *analyses.values()]

    def task(self, task_id: str) -> Task:
        tasks = {t.id: t for t in self.tasks()}
        if task_id not in tasks:
            close = difflib.get_close_matches(task_id, list(tasks), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{self.path}: no task {task_id!r}; its tasks are "
                             f"{list(tasks)}.{hint}")
        return tasks[task_id]

    def settings(self, task: Task) -> str:
        """What a task's output depends on, as JSON: stored in the output (``sweep_config``)
        and compared before a finished output is kept."""
        model = dataclasses.asdict(self.model(task.model))
        for key in ("device", "batch_size"):  # they do not change the activations
            model.pop(key)
        brains = [b for b in self.brains if b.stimuli_label == task.stimuli]
        stimuli = {"stimuli": brains[0].stimuli, "stimulus_ids": brains[0].stimulus_ids}
        record: dict[str, Any] = {"model": model, **stimuli}
        if task.kind != "extract":
            a = self.analysis(task.analysis or "")
            record["analysis"] = {"kind": a.kind, **a.options}
            if task.brain:
                record["brain"] = self.brain(task.brain).data
        return json.dumps(record, sort_keys=True, default=list)


def _resolve(path_text: str, base: Path) -> str:
    """A path relative to the sweep file's folder, made absolute; names stay names."""
    path = Path(path_text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _brain_data(text: str, kinds: set[str], base: Path, where: str) -> str:
    """A registered name as it is, else a file (relative to the sweep file) that must exist
    — checked against what the analyses using it read."""
    from neuroalign.data.registry import BRAIN_DATA, RESPONSE_DATA, _cv_suffix

    registries: dict[str, dict] = {"rsa": BRAIN_DATA, "encoding": RESPONSE_DATA}
    if all(text in registries[kind] for kind in kinds):
        return text
    file_text, method = _cv_suffix(text)
    path = Path(_resolve(file_text, base))
    if path.is_file():
        return str(path) + (f":{method}" if method else "")
    names = [name for kind in sorted(kinds) for name in registries[kind]]
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise _fail(where, f"{text!r} is neither brain data the analyses {sorted(kinds)} can use "
                       f"({', '.join(dict.fromkeys(names))}) nor an existing file.{hint}")


def _stimuli(text: str, base: Path, where: str) -> str:
    from neuroalign.data.stimulus_sets import STIMULUS_SETS

    if text in STIMULUS_SETS:
        return text
    path = Path(_resolve(text, base))
    if path.is_dir():
        return str(path)
    close = difflib.get_close_matches(text, list(STIMULUS_SETS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise _fail(where, f"{text!r} is neither a registered stimulus set "
                       f"({', '.join(STIMULUS_SETS)}) nor a folder of images.{hint}")


def _entries(raw: dict, key: str, where: str) -> list:
    tables = raw.get(key)
    if not isinstance(tables, list) or not tables:
        raise _fail(f"{where}{key}", f"missing: give at least one [[{key}]] table")
    return tables


def load_sweep(config: str | Path | dict, *, out: str | Path | None = None) -> Sweep:
    """Read and check a sweep: a TOML file or the dict of one (paths then relative to the
    working directory). ``out`` overrides the file's output folder.

    Raises:
        SweepConfigError: an unknown or missing key, a value of the wrong type, a name used
            twice or not defined, brain data or stimuli that do not exist — the message names
            the file and the key (``sweep.toml: models[1].image_size: ...``).
    """
    if isinstance(config, dict):
        path, raw = Path("<sweep>").absolute(), config
        base = Path.cwd()
    else:
        path = Path(config).absolute()
        if not path.is_file():
            raise FileNotFoundError(f"no such sweep file: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise SweepConfigError(f"{path}: not valid TOML: {err}") from None
        base = path.parent
    prefix = f"{path}: "
    try:
        return _parse(raw, path, base, out)
    except SweepConfigError as err:
        raise SweepConfigError(prefix + str(err)) from None


def _parse(raw: dict, path: Path, base: Path, out) -> Sweep:
    _check_keys(raw, TOP_KEYS, "")
    defaults = dict(EXTRACTION_DEFAULTS)
    if "extraction" in raw:
        schema = {k: MODEL_KEYS[k] for k in MODEL_KEYS if k not in ("name", "spec")}
        defaults.update(_table(raw["extraction"], schema, "extraction", ()))
    if out is None:
        if "out" not in raw:
            raise _fail("out", "missing: the output folder (relative to the sweep file)")
        out_dir = Path(_resolve(_str()(raw["out"], "out"), base))
    else:
        out_dir = Path(out).absolute()

    models = []
    for i, table in enumerate(_entries(raw, "models", "")):
        where = f"models[{i}]"
        values = {**defaults, **_table(table, MODEL_KEYS, where, ["spec"])}
        values.setdefault("name", _label(values["spec"].rpartition(":")[2].rpartition("/")[2]))
        _check_name(values["name"], f"{where}.name")
        if (values.get("mean") is None) != (values.get("std") is None):
            raise _fail(f"{where}.{'std' if 'mean' in values else 'mean'}",
                        "give mean and std together")
        if (values.get("projection") is None) != (values.get("n_components") is None):
            raise _fail(f"{where}.{'n_components' if 'projection' in values else 'projection'}",
                        "give projection and n_components together")
        if values.get("weights") and Path(_resolve(values["weights"], base)).is_file():
            values["weights"] = _resolve(values["weights"], base)
        spec = values["spec"]
        if spec.endswith(".pt") or spec.startswith((".", "~")):  # a checkpoint file
            values["spec"] = _resolve(spec, base)
        models.append(ModelEntry(**values))
    _unique([m.name for m in models], "models")

    brain_tables = _entries(raw, "brains", "")
    analyses_raw = _entries(raw, "analyses", "")
    brain_names = []
    for i, table in enumerate(brain_tables):
        where = f"brains[{i}].name"
        if isinstance(table, dict) and "name" in table:
            brain_names.append(_check_name(_str()(table["name"], where), where))
        elif isinstance(table, dict) and isinstance(table.get("data"), str):
            data = table["data"]
            brain_names.append(_label(Path(data).stem if "/" in data else data))
        else:
            brain_names.append(f"brain{i}")
    _unique(brain_names, "brains")

    analyses = []
    model_names = [m.name for m in models]
    kinds_of_brain: dict[str, set[str]] = {name: set() for name in brain_names}
    for i, table in enumerate(analyses_raw):
        where = f"analyses[{i}]"
        if not isinstance(table, dict):
            raise _fail(where, f"must be a table; got {table!r}")
        kind = _COMMON_ANALYSIS["kind"](table.get("kind"), f"{where}.kind") if "kind" in table \
            else None
        if kind is None:
            raise _fail(f"{where}.kind", f"missing: one of {list(ANALYSIS_KINDS)}")
        schema = {**_COMMON_ANALYSIS, **ANALYSIS_KEYS[kind]}
        values = _table(table, schema, where, ["kind"])
        name = _check_name(values.pop("name", kind), f"{where}.name")
        if name == "extract":
            raise _fail(f"{where}.name", "'extract' names the extraction tasks; choose another")
        chosen = {}
        for key, known in (("models", model_names), ("brains", brain_names)):
            chosen[key] = values.pop(key, tuple(known))
            for j, item in enumerate(chosen[key]):
                if item not in known:
                    close = difflib.get_close_matches(item, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise _fail(f"{where}.{key}[{j}]" if len(chosen[key]) > 1 else f"{where}.{key}",
                                f"no {key[:-1]} named {item!r}{hint}; there are {known}")
        values.pop("kind")
        for b in chosen["brains"]:
            kinds_of_brain[b].add(kind)
        analyses.append(AnalysisEntry(name, kind, tuple(chosen["models"]), tuple(chosen["brains"]),
                                      values))
    _unique([a.name for a in analyses], "analyses")

    brains = []
    for i, (table, name) in enumerate(zip(brain_tables, brain_names, strict=True)):
        where = f"brains[{i}]"
        values = _table(table, BRAIN_KEYS, where, ["data", "stimuli"])
        values["name"] = name
        kinds = kinds_of_brain[name] - {"decorrelation"}
        values["data"] = _brain_data(values["data"], kinds, base, f"{where}.data") if kinds \
            else values["data"]
        values["stimuli"] = _stimuli(values["stimuli"], base, f"{where}.stimuli")
        if "stimulus_ids" in values:
            if not Path(values["stimuli"]).is_dir():
                raise _fail(f"{where}.stimulus_ids", "maps the files of a folder; "
                                                     f"{values['stimuli']!r} is a registered set")
            values["stimulus_ids"] = _resolve(values["stimulus_ids"], base)
        brains.append(BrainEntry(**values))
    by_label: dict[str, BrainEntry] = {}
    for i, b in enumerate(brains):
        other = by_label.setdefault(b.stimuli_label, b)
        if (other.stimuli, other.stimulus_ids) != (b.stimuli, b.stimulus_ids):
            raise _fail(f"brains[{i}].stimuli", f"{b.stimuli!r} and {other.stimuli!r} (brain "
                        f"{other.name}) would share the activation file name "
                        f"{b.stimuli_label}.nc; rename one folder")
    return Sweep(path, out_dir, tuple(models), tuple(brains), tuple(analyses),
                 out_given=out is not None)


def _unique(names: list[str], key: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise _fail(f"{key}[{i}].name", f"{name!r} is used twice; give each a distinct name")
        seen.add(name)


# ----------------------------------------------------------------------------- one task

@dataclasses.dataclass
class TaskOutcome:
    """What became of a task: ``status`` is ``done`` (computed now), ``kept`` (its output
    was already there with the same settings), ``failed``, or ``blocked`` (its extraction
    failed)."""

    task: Task
    status: str
    seconds: float = 0.0
    error: str = ""
    traceback: str = ""

    @property
    def message(self) -> str:
        text = f"{self.task.id} ({self.task.describe()}): {self.status}"
        return text + (f": {self.error}" if self.error else "")


def _output_settings(path: Path) -> str | None:
    """The ``sweep_config`` stored in a finished output, None when it has none."""
    if not path.is_file():
        return None
    import h5py

    with h5py.File(path, "r") as f:
        value = f.attrs.get("sweep_config")
    if isinstance(value, bytes):
        value = value.decode()
    return None if value is None else str(value)


def is_finished(sweep: Sweep, task: Task) -> bool:
    """The task's output exists and was made with the task's current settings."""
    return _output_settings(task.path) == sweep.settings(task)


def run_task(sweep: Sweep, task: Task | str, *, force: bool = False) -> TaskOutcome:
    """Run one task (unless finished: ``kept``) and return its outcome; an exception is
    caught into a ``failed`` outcome (a KeyboardInterrupt is not). An analysis whose
    activation file is missing fails, naming the extraction task to run first."""
    task = sweep.task(task) if isinstance(task, str) else task
    with _ONE_TASK_AT_A_TIME:
        start = time.perf_counter()
        try:
            if not force and is_finished(sweep, task):
                return TaskOutcome(task, "kept")
            if task.kind == "extract":
                _extract(sweep, task)
            else:
                _analyse(sweep, task)
        except Exception as err:  # reported with the task; the other tasks go on
            return TaskOutcome(task, "failed", time.perf_counter() - start,
                               f"{type(err).__name__}: {err}", traceback.format_exc())
        return TaskOutcome(task, "done", time.perf_counter() - start)


#: Tasks read and write HDF5 files through both h5py and netCDF4, which are not safe from
#: several threads of one process at once (a read beside a write fails with "NetCDF: HDF
#: error"): one task at a time per process; parallel tasks need processes (dask's
#: ``processes`` scheduler, distributed workers).
_ONE_TASK_AT_A_TIME = threading.Lock()


def _extract(sweep: Sweep, task: Task) -> None:
    from neuroalign.data.stimuli import StimulusSet
    from neuroalign.data.stimulus_sets import STIMULUS_SETS, load_stimulus_set
    from neuroalign.extraction import extract
    from neuroalign.models.specs import load_model
    from neuroalign.training.trainer import resolve_device

    settings = sweep.settings(task)
    for existing in (task.path, task.path.with_name(task.path.name + ".partial")):
        stored = _output_settings(existing)
        if stored is not None and stored != settings:
            raise ValueError(f"{existing} was extracted with other settings "
                             f"({_differences(stored, settings)}); delete it to extract again")
    m = sweep.model(task.model)
    brain = next(b for b in sweep.brains if b.stimuli_label == task.stimuli)
    stimuli = load_stimulus_set(brain.stimuli) if brain.stimuli in STIMULUS_SETS else \
        StimulusSet.from_folder(brain.stimuli, stimulus_ids=brain.stimulus_ids)
    device = resolve_device(m.device)
    loaded = load_model(m.spec, m.weights, device=device, seed=m.seed, image_size=m.image_size,
                        mean=m.mean, std=m.std)
    attrs = {**loaded.attrs, "input_size": loaded.preprocessing.size, "sweep_config": settings,
             "sweep_task": task.id}
    task.path.parent.mkdir(parents=True, exist_ok=True)
    extract(loaded.model, stimuli, list(m.layers) if isinstance(m.layers, tuple) else m.layers,
            out=task.path, transform=loaded.transform, batch_size=m.batch_size, device=device,
            dtype=m.dtype, pooling=m.pooling, tokens=m.tokens, projection=m.projection,
            n_components=m.n_components, seed=m.seed, attrs=attrs, resume=True,
            progress=False)


def _differences(stored: str, current: str) -> str:
    """"key: stored → current" for each setting that differs between two ``settings``."""
    def flat(record, prefix=""):
        items = {}
        for key, value in record.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    a, b = flat(json.loads(stored)), flat(json.loads(current))
    return "; ".join(f"{key}: {a.get(key)!r} in the file, {b.get(key)!r} now"
                     for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key))


def _analyse(sweep: Sweep, task: Task) -> None:
    from neuroalign import workflows

    acts = sweep.activation_path(task.model, task.stimuli)
    if not acts.is_file():
        raise FileNotFoundError(
            f"the activation file {acts} is missing: run the extraction task first "
            f"({_command(sweep, ['--task', task.needs or ''])})")
    a = sweep.analysis(task.analysis or "")
    if a.kind == "rsa":
        ds = workflows.rsa_from_file(acts, sweep.brain(task.brain or "").data, **a.options)
    elif a.kind == "encoding":
        ds = workflows.encoding_from_file(acts, sweep.brain(task.brain or "").data, **a.options)
    else:
        ds = workflows.decorrelation_from_file(acts, **a.options)
    ds.attrs.update(sweep_task=task.id, sweep_config=sweep.settings(task), analysis=a.name,
                    analysis_kind=a.kind, sweep_model=task.model)
    workflows.save_results(ds, task.path)


def _after(sweep: Sweep, task: Task, *needed: TaskOutcome) -> TaskOutcome:
    """A task in the graph: blocked when the extraction it reads failed."""
    for dep in needed:
        if dep.status in ("failed", "blocked"):
            return TaskOutcome(task, "blocked", error=f"its extraction {dep.task.id} failed")
    return run_task(sweep, task)


# ----------------------------------------------------------------------------- many tasks

@dataclasses.dataclass
class SweepReport:
    """The outcome of every task run, and the merged results (None when not merged)."""

    sweep: Sweep
    outcomes: list[TaskOutcome]
    results: xr.Dataset | None = None
    figure: list[Path] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "blocked")]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return counts


def run_sweep(config: str | Path | dict | Sweep, *, out: str | Path | None = None,
              scheduler: str | None = None, tasks: Sequence[str] | None = None,
              progress: bool = True, merge: bool | None = None) -> SweepReport:
    """Run a sweep's unfinished tasks as one dask graph, then merge the results.

    Args:
        config: a sweep file, its dict, or a `Sweep`.
        out: output folder instead of the file's ``out``.
        scheduler: ``"sync"`` (one task at a time, in this thread), ``"processes"`` (dask's
            local process pool), ``"threads"`` (one task at a time too: see
            ``_ONE_TASK_AT_A_TIME``), the address of a ``dask.distributed`` scheduler
            (``tcp://host:8786``), or None: the active ``distributed`` client if one exists,
            else ``"sync"``.
        tasks: run only these task ids (an analysis then needs its activation file to
            exist); None: every task.
        progress: a tqdm bar over the tasks.
        merge: write ``results.nc`` and the summary figure (default: when every task was
            chosen).

    Returns:
        A `SweepReport`.

    Raises:
        SweepFailed: a task failed (after the others finished and the merge); the exception's
            ``report`` holds every outcome.
    """
    import dask
    from tqdm.auto import tqdm

    sweep = config if isinstance(config, Sweep) else load_sweep(config, out=out)
    chosen = sweep.tasks() if tasks is None else [sweep.task(t) for t in tasks]
    merge = tasks is None if merge is None else merge
    graph: dict[str, Any] = {}
    for task in chosen:
        deps = [graph[task.needs]] if task.needs in graph else []
        # the sweep and task go in through partial: dask would take dataclass arguments apart
        graph[task.id] = dask.delayed(functools.partial(_after, sweep, task), pure=False)(
            *deps, dask_key_name=f"sweep-{task.id}")
    bar = tqdm(total=len(graph), unit="task", desc="sweep", disable=not progress)
    try:
        outcomes = _compute(list(graph.values()), scheduler, bar)
    finally:
        bar.close()
    report = SweepReport(sweep, outcomes)
    if merge:
        report.results = merge_results(sweep)
        report.figure = plot_sweep(report.results, sweep.out / "summary.png")
    if report.failed:
        raise SweepFailed(report)
    return report


def _compute(delayed: list, scheduler: str | None, bar) -> list[TaskOutcome]:
    """Compute the task graph on the scheduler asked for, ticking ``bar`` per task."""
    import dask
    from dask.callbacks import Callback

    client, own = _client(scheduler)
    if client is not None:
        from distributed import as_completed

        try:
            futures = client.compute(delayed)
            for future in as_completed(futures):
                outcome = future.result()
                bar.set_postfix_str(outcome.task.id, refresh=False)
                bar.update(1)
            return client.gather(futures)
        finally:
            if own:
                client.close()

    def tick(key, result, dsk, state, worker_id):
        if isinstance(result, TaskOutcome):
            bar.set_postfix_str(result.task.id, refresh=False)
            bar.update(1)

    with Callback(posttask=tick):
        return list(dask.compute(*delayed, scheduler=scheduler or "sync"))


def _client(scheduler: str | None):
    """(client, whether this function made it): a distributed client for an address, the
    active one when ``scheduler`` is None, else (None, False)."""
    if scheduler in ("sync", "synchronous", "single-threaded", "threads", "threading",
                     "processes", "multiprocessing"):
        return None, False
    try:
        from distributed import Client, default_client
    except ImportError:
        if scheduler is None:
            return None, False
        raise ValueError(f"scheduler {scheduler!r} is a dask.distributed address: install "
                         "neuroalign[distributed]") from None
    if scheduler is None:
        try:
            return default_client(), False
        except ValueError:  # no client
            return None, False
    return Client(scheduler), True


def _command(sweep: Sweep, extra: list[str]) -> str:
    argv = ["neuroalign", "sweep", str(sweep.path)]
    if sweep.out_given:
        argv += ["--out", str(sweep.out)]
    return shlex.join(argv + extra)


def sweep_commands(sweep: Sweep, stage: str | None = None) -> list[str]:
    """One ``neuroalign sweep FILE --task ID`` command per task (extractions first), then
    the merge: run one by one, or each extraction line, then each analysis line, as array
    jobs. ``stage``: only ``"extract"``, ``"analyse"`` or ``"merge"``."""
    stages = ("extract", "analyse", "merge")
    if stage is not None and stage not in stages:
        raise ValueError(f"stage must be one of {stages}; got {stage!r}")
    lines = []
    for task in sweep.tasks():
        kind = "extract" if task.kind == "extract" else "analyse"
        if stage in (None, kind):
            lines.append(_command(sweep, ["--task", task.id]))
    if stage in (None, "merge"):
        lines.append(_command(sweep, ["--merge"]))
    return lines


# ----------------------------------------------------------------------------- merging

def _metrics(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The per-layer numbers of one result: variables over ``layer`` (or scalars, such as
    the noise ceiling, repeated over layers) as they are; over ``layer`` and ``neuroid``
    their median over neuroids (``<name>_median``). Per-subject or per-pair variables stay
    in the task's own file."""
    out = {}
    for name, var in ds.data_vars.items():
        if var.dtype == bool or not np.issubdtype(var.dtype, np.number):
            continue
        dims = set(var.dims)
        if dims <= {"layer"}:
            out[str(name)] = var.astype(np.float64)
        elif dims <= {"layer", "neuroid"}:
            median = var.astype(np.float64).median("neuroid", skipna=True)
            median.attrs = {"long_name": f"median over neuroids of "
                                         f"{var.attrs.get('long_name', name)}"}
            out[f"{name}_median"] = median
    return out


def merge_results(sweep: Sweep, out: str | Path | None = None) -> xr.Dataset:
    """Gather every finished analysis of a sweep into one Dataset and write it to
    ``out`` (default ``OUT/results.nc``) through `workflows.save_results`.

    The variable ``value`` has dims ``(model, layer, brain, metric)``. Models have different
    layers, so ``layer`` is the position among a model's analysed layers (0, 1, …; NaN past
    its last one), and the coordinates ``layer_name (model, layer)`` (the module path, ""
    in padding) and ``relative_depth (model, layer)`` (position / (n_layers − 1)) say which
    layer it is. A metric is ``ANALYSIS.VARIABLE`` (``rsa.mean``, ``rsa.noise_ceiling_lower``,
    ``encoding.r_median``); a decorrelation result, which depends on the stimuli only, is
    repeated for every brain set recorded on them. Unfinished tasks leave NaN and are listed
    in the attribute ``missing_tasks``.
    """
    from neuroalign import workflows

    cells: list[tuple[str, str, str, dict[str, xr.DataArray], list[str]]] = []
    missing: list[str] = []
    layer_order: dict[str, list[str]] = {m.name: [] for m in sweep.models}
    long_names: dict[str, str] = {}
    for task in sweep.tasks():
        if task.kind == "extract":
            continue
        if not is_finished(sweep, task):
            missing.append(task.id)
            continue
        a = sweep.analysis(task.analysis or "")
        brains = [task.brain] if task.brain else [
            b for b in a.brains if sweep.brain(b).stimuli_label == task.stimuli]
        with xr.open_dataset(task.path) as ds:
            metrics = {k: v.load() for k, v in _metrics(ds).items()}
            for name, var in metrics.items():
                long_names.setdefault(f"{a.name}.{name}",
                                      str(var.attrs.get("long_name", ds[name].attrs.get(
                                          "long_name", name) if name in ds else name)))
            layers = [str(v) for v in ds["layer"].values]
        for layer in layers:
            if layer not in layer_order[task.model]:
                layer_order[task.model].append(layer)
        for brain in brains:
            cells.append((task.model, brain, a.name, metrics, layers))

    models = [m.name for m in sweep.models]
    brains = [b.name for b in sweep.brains]
    metrics_seen: list[str] = []
    for _, _, analysis, values, _ in cells:
        for name in values:
            key = f"{analysis}.{name}"
            if key not in metrics_seen:
                metrics_seen.append(key)
    n_layers = max([len(v) for v in layer_order.values()] + [1])
    value = np.full((len(models), n_layers, len(brains), len(metrics_seen)), np.nan)
    for model, brain, analysis, values, layers in cells:
        mi, bi = models.index(model), brains.index(brain)
        li = [layer_order[model].index(layer) for layer in layers]
        for name, var in values.items():
            ki = metrics_seen.index(f"{analysis}.{name}")
            data = var.values if "layer" in var.dims else np.full(len(layers), float(var))
            value[mi, li, bi, ki] = data
    names = np.full((len(models), n_layers), "", dtype=object)
    depth = np.full((len(models), n_layers), np.nan)
    for mi, model in enumerate(models):
        order = layer_order[model]
        names[mi, :len(order)] = order
        depth[mi, :len(order)] = np.arange(len(order)) / max(len(order) - 1, 1)
    kinds = {a.name: a.kind for a in sweep.analyses}
    ds = xr.Dataset(
        {"value": (("model", "layer", "brain", "metric"), value,
                   {"long_name": "result of each metric per model, layer and brain set"})},
        coords={
            "model": models, "layer": np.arange(n_layers), "brain": brains,
            "metric": metrics_seen,
            "layer_name": (("model", "layer"), names.astype(str),
                           {"long_name": "the layer's module path ('' past a model's last layer)"}),
            "relative_depth": (("model", "layer"), depth,
                               {"long_name": "position among the model's analysed layers, 0 "
                                             "(first) to 1 (last)"}),
            "n_layers": ("model", [len(layer_order[m]) for m in models]),
            "model_spec": ("model", [sweep.model(m).spec for m in models]),
            "brain_data": ("brain", [sweep.brain(b).data for b in brains]),
            "stimuli": ("brain", [sweep.brain(b).stimuli_label for b in brains]),
            "analysis": ("metric", [k.split(".", 1)[0] for k in metrics_seen]),
            "analysis_kind": ("metric", [kinds[k.split(".", 1)[0]] for k in metrics_seen]),
            "variable": ("metric", [k.split(".", 1)[1] for k in metrics_seen]),
            "metric_long_name": ("metric", [long_names.get(k, k) for k in metrics_seen]),
        },
        attrs={"sweep": str(sweep.path), "n_results": len(cells),
               "missing_tasks": ", ".join(missing) or "none",
               "layer": "position among each model's analysed layers; see layer_name and "
                        "relative_depth"},
    )
    workflows.save_results(ds, sweep.out / "results.nc" if out is None else out)
    return ds


# ----------------------------------------------------------------------------- the figure

def plot_sweep(ds: xr.Dataset, out: str | Path) -> list[Path]:
    """The summary of a merged sweep (`merge_results`): a row per analysis, a panel per
    brain set, its headline metric (RSA: mean similarity over subjects with the noise-ceiling
    band; encoding: median noise-corrected r, else median r; decorrelation: L) against the
    layers' relative depth, one line per model. Written as PNG and SVG; returns their paths."""
    import matplotlib.pyplot as plt

    from neuroalign.analysis.plots.figures import NOISE_CEILING_COLOR, save_figure

    analyses = list(dict.fromkeys(str(a) for a in ds["analysis"].values)) or ["none"]
    brains = [str(b) for b in ds["brain"].values]
    fig, axes = plt.subplots(len(analyses), max(len(brains), 1), squeeze=False,
                             figsize=(3.2 * max(len(brains), 1) + 1.6, 2.7 * len(analyses)))
    for row, analysis in zip(axes, analyses, strict=True):
        for ax, brain in zip(row, brains, strict=False):
            _panel(ax, ds, analysis, brain, NOISE_CEILING_COLOR)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.ravel()[1:]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=7,
                   frameon=False)
    fig.tight_layout()
    return save_figure(fig, out)


def _panel(ax, ds: xr.Dataset, analysis: str, brain: str, band_color) -> None:
    kind = next((str(k) for a, k in zip(ds["analysis"].values, ds["analysis_kind"].values,
                                        strict=True) if a == analysis), "")
    if kind == "decorrelation":  # depends on the stimuli only
        title = f"{analysis}: {ds['stimuli'].sel(brain=brain).item()} (stimuli of {brain})"
    else:
        title = f"{analysis}: {brain} ({ds['brain_data'].sel(brain=brain).item()})"
    ax.set_title(title, fontsize=8, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    metrics = [str(m) for m in ds["metric"].values]
    sel = ds["value"].sel(brain=brain)
    headline = next((f"{analysis}.{v}" for v in HEADLINE.get(kind, ())
                     if f"{analysis}.{v}" in metrics), None)
    if headline is None or not np.isfinite(sel.sel(metric=headline).values).any():
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes,
                fontsize=8, color="0.4")
        return
    if kind == "rsa" and f"{analysis}.noise_ceiling_lower" in metrics:
        # one ceiling per brain set, repeated over models and layers (NaN where not run)
        lower, upper = (_first_finite(sel.sel(metric=f"{analysis}.noise_ceiling_{side}").values)
                        for side in ("lower", "upper"))
        if np.isfinite(lower) and np.isfinite(upper):
            ax.axhspan(lower, upper, color=band_color, alpha=0.35, lw=0, label="noise ceiling")
    for i, model in enumerate(ds["model"].values):
        y = sel.sel(model=model, metric=headline).values
        x = ds["relative_depth"].sel(model=model).values
        ok = np.isfinite(y) & np.isfinite(x)
        if not ok.any():
            continue
        color = f"C{i % 10}"
        ax.plot(x[ok], y[ok], "o-", ms=3, lw=1.3, color=color, label=str(model))
        if kind == "rsa" and f"{analysis}.sem" in metrics:
            sem = sel.sel(model=model, metric=f"{analysis}.sem").values[ok]
            ax.fill_between(x[ok], y[ok] - sem, y[ok] + sem, color=color, alpha=0.15, lw=0)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xticks([0, 0.5, 1])
    ax.set_xticklabels(["first", "middle", "last"])
    ax.set_xlabel("layer (relative depth)", fontsize=8)
    variable = headline.split(".", 1)[1]
    method = {"rsa": "similarity (mean over subjects ± SEM)",
              "encoding": {"r_corrected_median": "median noise-corrected r",
                           "r_median": "median r"}.get(variable, variable) + " over neuroids",
              "decorrelation": "decorrelation L"}.get(kind, variable)
    ax.set_ylabel(method, fontsize=8)


def _first_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else math.nan
