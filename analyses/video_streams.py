"""Video models against the visual streams: layerwise RSA per stream with noise ceilings, and
one model family's unique variance against another's per stream (banded ridge on movie fMRI).

    python analyses/video_streams.py --clips CLIPS/ --brain clips_responses.nc movie.nc \\
        --models flow=torchvision:raft_small+resnet18@cnn.layer1,cnn.layer2,cnn.layer3,cnn.layer4 \\
                 'videomae=hf:MCG-NJU/videomae-base@encoder.layer.*' \\
                 r3d=torchvision:r3d_18@layer1,layer2,layer3,layer4 \\
        --frames 16 --fps 8 --partition flow videomae --out video_study

    python analyses/video_streams.py --quick --out video_quick     # a few minutes, no downloads

Inputs:
  --clips      a folder of clips (``neuroalign.data.clips.ClipSet``): one stimulus per clip,
               its id the file name without suffix.
  --brain      one or more files, each either
               * responses per clip (``presentation × neuroid [× repetition]``, the assembly
                 of ``neuroalign.data.assemblies``; ``stimulus_id`` = the clip ids, a stream
                 label per neuroid in ``--stream-coord``, ``subject`` per neuroid for noise
                 ceilings): RSA of every model layer per stream, or
               * a movie response (``neuroalign.data.movies``: ``bold`` time × voxel, runs, the
                 stimulus timeline naming the clips, ``stream`` per voxel): banded-ridge
                 variance partitioning of the ``--partition`` families per stream.
  --models     ``NAME=SPEC[@LAYER,LAYER,...]`` (any model spec of docs/compare-models.md; the
               layers module paths or patterns, default every block). Each is extracted once
               to ``OUT/activations/NAME.nc`` (average-pooled over space, time kept), resumed
               if interrupted; both analyses read these files.

Outputs (``--out``): ``rsa_<brain>_<model>.nc`` (dims stream × layer [× subject]: mean,
SEM, CI, noise ceilings) and ``rsa_<brain>_<model>.png``/``.svg`` (layers on x, one panel per
stream, the similarity with its CI and the noise-ceiling band);
``partition_<brain>_<A>-vs-<B>.nc`` (per voxel) and ``..._by_stream.nc`` (medians per
stream) with ``.png``/``.svg`` (one panel per stream: unique R² of each family and the shared
R², median and voxels), for each ``--partition A B`` (repeatable; default ``flow videomae``
when both are models; a family is a model's layers concatenated, or a clip features file
given as ``--features NAME=FILE.npz``).

``--quick`` is a pipeline sanity check, not a finding. It builds its own data under
``OUT/quick-data``: 128 one-second clips written with PyAV (drifting gratings, moving dots,
static gratings, static textures; 64 px, 2 frames at 2 fps: ``neuroalign.data.synthetic_clips``),
a synthetic brain whose "dorsal" voxels are driven by pixel motion energy and "ventral" ones by
static shape energy ("lateral" by both) — per-clip responses of 4 subjects with 2 repetitions,
and a movie of 4 runs (the clips back to back, SPM's HRF, TR 1 s) — and runs random-weight
models: the flow CNN ``torchvision:raft_small+resnet18`` (2 RAFT updates), a 4-layer VideoMAE
made here, and ``torchvision:r3d_18`` at 32 px. Random weights answer nothing (random RAFT
carries no motion information), so the planted answer is checked through the same
partitioning code with the pixel families themselves (motion energy vs static energy: the
motion family's unique variance must be high in "dorsal" and near 0 in "ventral"). The real
study needs pretrained weights (a network, or the weights copied into ``TORCH_HOME`` /
``HF_HOME``) and real data: per-clip responses and movie fMRI in the formats of
docs/movies.md; none exists offline here.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign import workflows

QUICK_FRAMES, QUICK_FPS, QUICK_SIZE, QUICK_TR = 2, 2.0, 64, 1.0
STREAMS = ("dorsal", "ventral", "lateral")


@dataclass
class ModelChoice:
    """One model of the study: its short name, spec, layers and optional overrides."""

    name: str
    spec: str
    layers: list[str] | None = None
    image_size: int | None = None
    tokens: str = "mean"


def parse_model(text: str) -> ModelChoice:
    """``NAME=SPEC[@LAYER,LAYER,...]`` -> a ModelChoice (a clear error otherwise)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest or ":" in name:
        raise ValueError(f"give each model as NAME=SPEC[@LAYER,LAYER,...]; got {text!r}")
    spec, at, layers = rest.partition("@")
    chosen = [x for x in layers.split(",") if x] if at else None
    if at and not chosen:
        raise ValueError(f"{text!r}: no layers after '@'")
    return ModelChoice(name, spec, chosen)


# ------------------------------------------------------------------------------- extraction
def extract_models(models: list[ModelChoice], clips, out: Path, *, weights, batch_size: int,
                   flow_updates: int | None) -> dict[str, Path]:
    """Each model's activation file (space average-pooled, time kept), extracted once and
    resumed if interrupted."""
    from neuroalign.extraction import extract
    from neuroalign.models import load_model

    files = {}
    (out / "activations").mkdir(parents=True, exist_ok=True)
    for m in models:
        loaded = load_model(m.spec, weights=weights, image_size=m.image_size, clips=True)
        flow = getattr(loaded.model, "flow", None)
        if flow_updates is not None and flow is not None and hasattr(flow, "flow_updates"):
            flow.flow_updates = int(flow_updates)
        start = time.perf_counter()
        files[m.name] = extract(
            loaded.model, clips, m.layers if m.layers is not None else "blocks",
            out / "activations" / f"{m.name}.nc", transform=loaded.transform, pooling="avg",
            tokens=m.tokens, time_pooling=None, batch_size=batch_size, resume=True,
            attrs={**loaded.attrs, "study_model": m.name,
                   **({"flow_updates": int(flow_updates)} if flow_updates and flow is not None else {})})
        print(f"extracted {m.name} ({m.spec}): {time.perf_counter() - start:.1f} s")
    return files


# ------------------------------------------------------------------------------------- RSA
def brain_kind(path: Path) -> str:
    """"movie" (a movie response: ``bold`` over time) or "clips" (responses per clip)."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return "movie" if "bold" in f.files else "clips"
    with xr.open_dataset(path) as ds:
        return "movie" if "bold" in ds.data_vars else "clips"


def stream_rdms(path: Path, stream_coord: str, rdm_method: str):
    """The per-clip responses' RDMs, one per subject and stream (repetitions averaged)."""
    from neuroalign.data.assemblies import read_assembly
    from neuroalign.data.responses import response_rdms

    assembly = read_assembly(path)
    if stream_coord not in assembly.coords or assembly[stream_coord].dims != ("neuroid",):
        raise ValueError(f"{path}: no neuroid coordinate {stream_coord!r} with the stream of "
                         f"each neuroid (it has {sorted(map(str, assembly.coords))})")
    return response_rdms(assembly, rdm_method, region_coord=stream_coord, name=path.stem)


def rsa_per_stream(activations: Path, rdms, *, rdm_method: str, compare_method: str,
                   n_boot: int, seed: int) -> xr.Dataset:
    """Layerwise RSA of one activation file against each stream's RDMs (dims stream, layer,
    subject), each stream with its own noise ceiling."""
    from neuroalign.analysis.rsa import layerwise_rsa

    model = workflows.layer_rdms_from_file(activations, rdm_method=rdm_method)
    has_subject = "subject" in rdms.rdm_descriptors
    streams = list(dict.fromkeys(np.asarray(rdms.rdm_descriptors["roi"]).astype(str)))
    parts = []
    for stream in streams:
        ds = layerwise_rsa(model, None, rdms.subset("roi", stream), compare_method=compare_method,
                           subject_descriptor="subject" if has_subject else None, n_boot=n_boot,
                           seed=seed, brain_name=f"{rdms.descriptors.get('name', 'brain')} {stream}")
        parts.append(ds.expand_dims(stream=[stream]))
    out = xr.concat(parts, dim="stream", combine_attrs="drop_conflicts")
    out.attrs.update(activations=str(activations),
                     model_description=workflows.model_description(activations),
                     rdm_method=rdm_method, compare_method=compare_method)
    return out


def plot_rsa_streams(ds: xr.Dataset, title: str, out: Path) -> list[Path]:
    """Layers on x, one panel per stream: similarity with its interval and the noise ceiling."""
    import matplotlib.pyplot as plt

    from neuroalign.analysis.plots.figures import save_figure
    from neuroalign.analysis.plots.layerwise import draw_layerwise_rsa

    streams = [str(s) for s in ds["stream"].values]
    width = max(3.2, 0.45 * ds.sizes["layer"] + 1.6)
    fig, axes = plt.subplots(1, len(streams), figsize=(width * len(streams), 3.6), sharey=True,
                             squeeze=False)
    for ax, stream in zip(axes[0], streams, strict=True):
        draw_layerwise_rsa(ax, ds.sel(stream=stream))
        ax.set_title(stream, fontsize=9)
        ax.set_ylabel("")
    axes[0][0].set_ylabel(f"{ds.attrs.get('compare_method', '')} similarity to the brain RDM")
    axes[0][-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.tight_layout()
    return save_figure(fig, out)


# ---------------------------------------------------------------------- unique variance
def family_features(source: Path, responses) -> np.ndarray:
    """(volume, feature): a family's features on the movie's TR grid: every layer of a model's
    activation file (each with a time dim), concatenated, or a clip features file
    (``neuroalign.data.movies.read_clip_features``)."""
    from neuroalign.activations import layer_names, open_activations
    from neuroalign.analysis.timeseries import timeline_features
    from neuroalign.data.movies import read_clip_features

    if source.suffix.lower() == ".npz":
        return timeline_features(read_clip_features(source), responses)
    with open_activations(source, chunks=None) as tree:
        layers = layer_names(tree)
    return np.concatenate([timeline_features(read_clip_features(source, layer=layer),
                                             responses) for layer in layers], axis=1)


def partition_streams(sources: dict[str, Path], families: list[str], brain: Path, *,
                      delays, n_iter: int, seed: int, by: str) -> tuple[xr.Dataset, xr.Dataset]:
    """Unique variance of each family against the others per voxel (banded ridge,
    leave-one-run-out), and its medians per ``by`` label."""
    from neuroalign.analysis.movie_encoding import movie_variance_partitioning, summarize_neuroids
    from neuroalign.data.movies import read_movie_responses

    responses = read_movie_responses(brain)
    spaces = {name: family_features(sources[name], responses) for name in families}
    ds = movie_variance_partitioning(spaces, responses, delays=delays, n_iter=n_iter, seed=seed)
    ds.attrs.update(brain=str(brain), families=", ".join(families),
                    sources=", ".join(str(sources[n]) for n in families))
    return ds, summarize_neuroids(ds, by=by)


def plot_partition_streams(ds: xr.Dataset, by: str, title: str, out: Path) -> list[Path]:
    """One panel per stream: each family's unique R² and the shared R² (median bar, voxels as
    dots)."""
    import matplotlib.pyplot as plt

    from neuroalign.analysis.plots.figures import save_figure

    labels = np.asarray(ds[by].values).astype(str)
    streams = list(dict.fromkeys(labels))
    spaces = [str(s) for s in ds["space"].values]
    names = [f"unique {s}" for s in spaces] + ["shared"]
    fig, axes = plt.subplots(1, len(streams), figsize=(2.4 * len(streams) + 0.8, 3.4),
                             sharey=True, squeeze=False)
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    for ax, stream in zip(axes[0], streams, strict=True):
        keep = labels == stream
        values = [ds["r2_unique"].sel(space=s).values[keep] for s in spaces]
        values.append(ds["r2_shared"].values[keep])
        for i, v in enumerate(values):
            ax.bar(i, np.nanmedian(v), color=colors[i % 10], alpha=0.6, width=0.7)
            ax.scatter(i + np.linspace(-0.2, 0.2, len(v)), v, s=5, color="0.25", zorder=3)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{stream} ({keep.sum()} voxels)", fontsize=9)
    axes[0][0].set_ylabel("held-out R² (median; dots: voxels)")
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.tight_layout()
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- quick data
def _hrf(dt: float, length: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma HRF (peak 6 s, undershoot 16 s, ratio 1/6), unit sum."""
    from scipy.stats import gamma

    t = np.arange(0, length, dt)
    h = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
    return h / h.sum()


def quick_data(folder: Path, *, n_runs: int = 4, clips_per_run: int = 32, n_subjects: int = 4,
               voxels=(16, 16, 12), noise: float = 0.6, movie_noise: float = 0.4,
               seed: int = 0) -> dict:
    """Clips, per-clip responses and a movie response with a planted answer (see the module)."""
    from neuroalign.data.assemblies import make_assembly, write_assembly
    from neuroalign.data.movies import make_movie_responses, write_movie_responses
    from neuroalign.data.synthetic_clips import (
        CLIP_KINDS,
        make_clip,
        motion_energy,
        static_energy,
        write_clip,
    )

    rng = np.random.default_rng(seed)
    clip_dir = folder / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    n_clips = n_runs * clips_per_run
    ids = [f"c{i:03d}" for i in range(n_clips)]
    # the frame before each clip's first gives the first frame pair's difference
    motion, static = [], []
    for i, cid in enumerate(ids):
        frames = make_clip(CLIP_KINDS[i % len(CLIP_KINDS)], QUICK_FRAMES + 1, QUICK_SIZE, rng)
        write_clip(clip_dir / f"{cid}.mkv", frames[1:], QUICK_FPS)
        motion.append(motion_energy(frames))  # (frames, 10): pairs ending at each clip frame
        static.append(static_energy(frames[1:]))
    fam = {}
    for name, values in (("motion", np.stack(motion)), ("static", np.stack(static))):
        flat = values.reshape(-1, values.shape[-1])
        fam[name] = (values - flat.mean(axis=0)) / flat.std(axis=0)  # (clip, frame, 10)
    n_d, n_v, n_l = voxels
    streams = ["dorsal"] * n_d + ["ventral"] * n_v + ["lateral"] * n_l

    shared = rng.standard_normal((2, 10, len(streams)))

    def weights():
        """The voxels' weights: shared by the subjects, plus a subject's own part."""
        w_m, w_s = shared + 0.5 * rng.standard_normal(shared.shape)
        w_m[:, n_d:n_d + n_v] = 0  # ventral: static shape only
        w_s[:, :n_d] = 0  # dorsal: motion only
        return w_m, w_s

    # responses per clip: 4 subjects x 28 voxels, 2 repetitions
    per_clip, subjects = [], []
    for s in range(n_subjects):
        w_m, w_s = weights()
        signal = fam["motion"].mean(axis=1) @ w_m + fam["static"].mean(axis=1) @ w_s
        signal /= signal.std(axis=0)
        per_clip.append(signal[..., None] + noise * rng.standard_normal((*signal.shape, 2)))
        subjects += [f"sub-{s + 1}"] * len(streams)
    assembly = make_assembly(np.concatenate(per_clip, axis=1), ids, subject=subjects,
                             region=streams * n_subjects, name="responses")
    assembly = assembly.assign_coords(stream=("neuroid", streams * n_subjects))
    clip_file = write_assembly(assembly, folder / "clip_responses.nc")
    # the movie: each run its clips back to back from 2 s, then 8 s of blank; TR 1 s
    w_m, w_s = weights()
    lead, tail = 2.0, 8.0
    volumes = int((lead + clips_per_run * QUICK_FRAMES / QUICK_FPS + tail) / QUICK_TR)
    steps = int(round(QUICK_TR * QUICK_FPS))
    kernel = _hrf(1 / QUICK_FPS)
    bold, run_labels = [], []
    timeline: dict[str, list] = {k: [] for k in ("event_run", "onset", "duration", "stimulus_id")}
    for r in range(n_runs):
        run = f"run-{r + 1}"
        fine = np.zeros((volumes * steps, len(streams)))
        for c in range(clips_per_run):
            i = r * clips_per_run + c
            start = int(lead * QUICK_FPS) + c * QUICK_FRAMES
            fine[start:start + QUICK_FRAMES] = fam["motion"][i] @ w_m + fam["static"][i] @ w_s
            for k, v in zip(timeline, (run, lead + c * QUICK_FRAMES / QUICK_FPS,
                                       QUICK_FRAMES / QUICK_FPS, ids[i]), strict=True):
                timeline[k].append(v)
        signal = np.apply_along_axis(lambda x: np.convolve(x, kernel)[:len(x)], 0, fine)
        sampled = signal.reshape(volumes, steps, -1).mean(axis=1)  # each volume's mean signal
        sampled /= sampled.std(axis=0)
        bold.append(sampled + movie_noise * rng.standard_normal(sampled.shape))
        run_labels += [run] * volumes
    movie = make_movie_responses(np.concatenate(bold), run_labels, QUICK_TR, stream=streams,
                                 roi=streams, timeline=timeline)
    movie_file = write_movie_responses(movie, folder / "movie.nc")
    # the planted answer's own families, from the pixels, as clip features files
    features = {}
    times = np.arange(QUICK_FRAMES) / QUICK_FPS
    for name, per_clip_values in (("motion-energy", motion), ("static-energy", static)):
        features[name] = folder / f"{name}.npz"
        np.savez(features[name], features=np.stack(per_clip_values), stimulus_id=np.array(ids),
                 time=times)
    return {"clips": clip_dir, "brains": [clip_file, movie_file], "features": features}


def quick_videomae(folder: Path) -> Path:
    """A 4-layer VideoMAE (random weights) for 4-frame 64-px clips, saved as a model folder."""
    import transformers

    target = folder / "videomae-tiny"
    if not (target / "config.json").is_file():
        config = transformers.VideoMAEConfig(
            image_size=QUICK_SIZE, patch_size=16, num_frames=QUICK_FRAMES, tubelet_size=2,
            hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128)
        transformers.VideoMAEModel(config).save_pretrained(target)
        transformers.VideoMAEImageProcessor(
            size={"shortest_edge": QUICK_SIZE},
            crop_size={"height": QUICK_SIZE, "width": QUICK_SIZE}).save_pretrained(target)
    return target


def quick_models(folder: Path) -> list[ModelChoice]:
    videomae = quick_videomae(folder)
    return [
        ModelChoice("flow", "torchvision:raft_small+resnet18",
                    [f"cnn.layer{i}" for i in range(1, 5)]),
        ModelChoice("videomae", f"hf:{videomae}", [f"encoder.layer.{i}" for i in range(4)]),
        ModelChoice("r3d", "torchvision:r3d_18", [f"layer{i}" for i in range(1, 5)],
                    image_size=QUICK_SIZE // 2),
    ]


# ------------------------------------------------------------------------------------ main
def parse_features(texts) -> dict[str, Path]:
    """``NAME=FILE.npz`` clip features files -> {name: path}."""
    out = {}
    for text in texts:
        name, sep, path = text.partition("=")
        if not sep or not name or not path.endswith(".npz"):
            raise ValueError(f"give clip features as NAME=FILE.npz; got {text!r}")
        out[name] = Path(path)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, help="folder of clips")
    parser.add_argument("--brain", type=Path, nargs="+", default=[],
                        help="per-clip responses (RSA) and/or movie responses (partitioning)")
    parser.add_argument("--models", nargs="+", default=[], help="NAME=SPEC[@LAYER,LAYER,...]")
    parser.add_argument("--features", nargs="+", default=[],
                        help="NAME=FILE.npz: clip features (e.g. motion energy) usable as a "
                             "family in --partition")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="synthetic clips, brain and random-weight models: a pipeline "
                             "sanity check, not a finding")
    parser.add_argument("--partition", nargs="+", action="append", default=None, metavar="NAME",
                        help="2-6 model (or --features) names whose unique variance is compared; "
                             "repeat for several comparisons (default: flow videomae when both "
                             "are among --models)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second sampled")
    parser.add_argument("--weights", default=None,
                        help="'random' for random weights (default: each source's pretrained)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="override every model's input size")
    parser.add_argument("--flow-updates", type=int, default=None,
                        help="RAFT refinement iterations of flow models (default RAFT's 12)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stream-coord", default="stream",
                        help="the neuroid coordinate naming each neuroid's stream")
    parser.add_argument("--rdm-method", default="correlation")
    parser.add_argument("--compare", default="spearman", help="RDM comparison (rsatoolbox)")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples of clips")
    parser.add_argument("--delays", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0],
                        help="FIR delays in seconds (multiples of the TR)")
    parser.add_argument("--n-iter", type=int, default=20, help="banded ridge random-search draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from neuroalign.data.clips import ClipSet

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        data = quick_data(out / "quick-data", seed=args.seed)
        args.clips, args.brain = data["clips"], data["brains"]
        args.frames, args.fps, args.weights, args.flow_updates = QUICK_FRAMES, QUICK_FPS, "random", 2
        args.delays, args.n_boot, args.batch_size = [3.0, 4.0, 5.0, 6.0, 7.0], 10, 16
        models = quick_models(out / "quick-data")
        features = data["features"]
        args.partition = [["flow", "videomae"], ["motion-energy", "static-energy"]]
    else:
        if args.clips is None or not args.brain or not args.models:
            parser.error("give --clips, --brain and --models (or --quick)")
        models = [parse_model(m) for m in args.models]
        for m in models:
            m.image_size = args.image_size
        features = parse_features(args.features)
    names = [m.name for m in models] + list(features)
    if len(set(names)) < len(names):
        raise SystemExit(f"model and feature names repeat: {names}")
    comparisons = args.partition or ([["flow", "videomae"]] if {"flow", "videomae"} <= set(names)
                                     else [])
    for families in comparisons:
        if unknown := sorted(set(families) - set(names)):
            raise SystemExit(f"--partition names {unknown}, not among the models and features "
                             f"{names}")

    clips = ClipSet(args.clips, frames=args.frames, fps=args.fps)
    try:
        files = extract_models(models, clips, out, weights=args.weights,
                               batch_size=args.batch_size, flow_updates=args.flow_updates)
    finally:
        clips.close()
    sources = {**files, **features}
    comment = "--quick: synthetic data and random weights; a pipeline sanity check, not a finding"

    written: dict[str, list[Path]] = {"rsa": [], "partition": []}
    for brain in args.brain:
        if brain_kind(brain) == "clips":
            start = time.perf_counter()
            rdms = stream_rdms(brain, args.stream_coord, args.rdm_method)
            for m in models:
                ds = rsa_per_stream(files[m.name], rdms, rdm_method=args.rdm_method,
                                    compare_method=args.compare, n_boot=args.n_boot,
                                    seed=args.seed)
                ds.attrs.update(brain=str(brain), study_model=m.name, model_spec=m.spec)
                if args.quick:
                    ds.attrs["comment"] = comment
                stem = f"rsa_{brain.stem}_{m.name}"
                written["rsa"].append(workflows.save_results(ds, out / f"{stem}.nc"))
                plot_rsa_streams(ds, f"{m.name} ({m.spec}) vs {brain.name}", out / f"{stem}.png")
                print(f"\nRSA {m.name} vs {brain.name} ({args.compare}):")
                for stream in ds["stream"].values:
                    sel = ds.sel(stream=stream)
                    print(f"  {stream}: noise ceiling {float(sel.noise_ceiling_lower):.3f}–"
                          f"{float(sel.noise_ceiling_upper):.3f}")
                    print("    " + workflows.format_table(sel, ["mean", "sem", "ci_lo", "ci_hi"])
                          .replace("\n", "\n    "))
            print(f"RSA vs {brain.name}: {time.perf_counter() - start:.1f} s")
            continue
        if not comparisons:
            print(f"{brain}: a movie response, but no --partition families; skipped")
        for families in comparisons:
            start = time.perf_counter()
            ds, summary = partition_streams(sources, families, brain, delays=args.delays,
                                            n_iter=args.n_iter, seed=args.seed, by="stream")
            if args.quick:
                ds.attrs["comment"] = summary.attrs["comment"] = comment
            stem = f"partition_{brain.stem}_{'-vs-'.join(families)}"
            written["partition"] += [workflows.save_results(ds, out / f"{stem}.nc"),
                                     workflows.save_results(summary, out / f"{stem}_by_stream.nc")]
            plot_partition_streams(ds, "stream", f"unique variance: {' vs '.join(families)} "
                                   f"({brain.name})", out / f"{stem}.png")
            print(f"\nunique and shared R² per stream, {' vs '.join(families)} ({brain.name}, "
                  "medians over voxels):")
            print(summary[["r2_unique", "r2_shared", "r2_joint"]].to_dataframe().to_string())
            print(f"({time.perf_counter() - start:.1f} s)")
    return written


if __name__ == "__main__":
    main()
