"""Sub-commands that read models: ``extract`` and ``layers``; ``merge`` joins the shards of an
``extract`` run under torchrun into one file."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

__all__ = ["add_extract", "add_layers", "add_merge"]


MODEL_HELP = ("a model spec: torchvision:NAME, timm:NAME, hf:HUB_ID_OR_FOLDER, open_clip:ARCH/TAG, "
              "module:package.module:factory (pretrained weights: see --weights), a neuroalign "
              "checkpoint (.pt), a registered name (conv_mae …), or torchvision/NAME, timm/NAME "
              "(random weights)")


def _add_model_args(p) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--weights", metavar="NAME|FILE|random",
                   help="weights of a torchvision:/timm:/hf:/open_clip:/module: model: a torchvision "
                        "enum name (IMAGENET1K_V2; default DEFAULT), a local file (.pth, .pt, .bin, "
                        ".safetensors), or 'random' (seeded by --seed); default: the source's "
                        "pretrained weights, from its cache (TORCH_HOME, HF_HOME) or downloaded")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of random initial weights (model names, --weights random), random "
                        "projections and masks (default 0)")


def _load(args, device, image_size=None, mean=None, std=None, clips=False):
    from neuroalign.models.specs import load_model

    return load_model(args.model, args.weights, device=device, seed=args.seed,
                      image_size=image_size, mean=mean, std=std, clips=clips)


def add_extract(sub):
    p = sub.add_parser(
        "extract", help="extract layer activations of a model for a stimulus set into netCDF",
        description="Run a model over stimuli and write the chosen layers' activations to one "
        "netCDF-4 file (a group per layer, 'presentation' dimension with stimulus ids). The "
        "file appears under its name only when complete. Under torchrun (torchrun "
        "--nproc_per_node N -m neuroalign extract ...) each process writes its share of the "
        "stimuli to OUT's shard files (acts.shard-00-of-02.nc ...) and rank 0 the manifest "
        "acts.manifest.json, which every reader opens as one file (see docs/cluster.md).")
    _add_model_args(p)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--stimuli",
                       help="a registered stimulus set (kriegeskorte92, cichy92, algonauts78, "
                            "cifar10-train, cifar10-test) or a folder of images")
    given.add_argument("--clips", type=Path, metavar="FOLDER",
                       help="video clips instead: a folder of video files (mp4, avi, webm, mkv, "
                            "mov) or of frame folders; video models take them as they are, an "
                            "image model runs frame by frame (see docs/video.md)")
    p.add_argument("--frames", type=_positive_int, default=16,
                   help="with --clips: frames per presentation (default 16)")
    p.add_argument("--fps", type=float,
                   help="with --clips: sample the frames at this rate (default: spread evenly "
                        "over each whole clip)")
    p.add_argument("--stride", type=float, metavar="SECONDS",
                   help="with --clips and --fps: a presentation per window, windows this far apart")
    p.add_argument("--frame-rate", type=float,
                   help="with --clips: the frame rate of frame folders (frames per second)")
    p.add_argument("--time-pooling", choices=["none", "mean", "max"], default="none",
                   help="with --clips: keep time in layers that have it (none, the default: "
                        "presentation x time x ...) or average / maximise over it")
    p.add_argument("--stimulus-ids", type=Path, metavar="MAP.csv",
                   help="a folder's images get these ids instead of their file names: a CSV "
                        "with the header file,stimulus_id (file: the image's path in the "
                        "folder, with or without suffix), e.g. to match a brain set's ids")
    p.add_argument("--out", required=True, type=Path, help="the activation file to write (.nc)")
    p.add_argument("--layers", nargs="+", default=None,
                   help="module paths, glob patterns (blocks.*), 'blocks' (every repeated block) or "
                        "'all' (every leaf module); default: the model's own choice (a neuroalign "
                        "model's encoder blocks), else every block (see neuroalign layers MODEL)")
    p.add_argument("--image-size", type=_positive_int,
                   help="input size in pixels (default: the model's own preprocessing: its "
                        "library's, the checkpoint's training size, else 224)")
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="normalisation mean, with --std (default: the model's own preprocessing; "
                        "none for neuroalign models, which see pixels in [0, 1])")
    p.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="normalisation standard deviation, with --mean")
    p.add_argument("--batch-size", type=int, default=64, help="stimuli per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' …")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="storage type")
    p.add_argument("--pooling", default=None,
                   help="spatial pooling of conv layers: none (default), 'avg' (global average) or k (k×k grid)")
    p.add_argument("--tokens", choices=["all", "cls", "patches", "mean"], default="all",
                   help="token choice for transformer outputs (batch, token, feature): all "
                        "(default), cls (the class token), patches (without class and register "
                        "tokens) or mean (over the patch tokens); the model's token layout is "
                        "read from it and stored in the file")
    p.add_argument("--projection", choices=["random", "pca"],
                   help="reduce each layer to --n-components features: seeded Gaussian random projection or PCA "
                        "(the matrix is stored in the file)")
    p.add_argument("--n-components", type=int, help="features per layer after --projection")
    p.add_argument("--pca-fit", type=int, help="fit PCA on the first m stimuli (default min(n, 1000))")
    p.add_argument("--mask", metavar="STRATEGY[:RATIO[:FILL]]",
                   help="mask every input before the forward pass, e.g. periphery:0.8:mean or patches:0.6 "
                        "(strategies of neuroalign.masking; seeded by --seed)")
    p.add_argument("--output-element", nargs="+", metavar="LAYER=KEY", default=None,
                   help="for layers returning a tuple, list or mapping: the element to keep, by "
                        "index or key (also --layers LAYER:KEY; default: element 0 of a tuple or "
                        "list, a mapping's first entry)")
    p.add_argument("--compression", choices=["zlib", "none"], default="zlib",
                   help="zlib (default: shuffle + deflate, which every netCDF reader decodes) or none")
    p.add_argument("--compression-level", type=int, default=1,
                   help="deflate level 1-9 (default 1, the fastest)")
    p.add_argument("--compression-threads", type=int,
                   help="threads deflating chunks (default: one per CPU core, at most 8)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted extraction (OUT.partial); a finished OUT written "
                        "with the same settings is kept as it is")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT or discard an interrupted OUT.partial")
    p.set_defaults(run=_run_extract)


def _run_extract(args):
    from neuroalign.extraction import UnknownLayerError

    if (args.mean is None) != (args.std is None):
        raise ValueError("give --mean and --std together")
    clip_options = [f"--{name.replace('_', '-')}" for name in ("fps", "stride", "frame_rate")
                    if getattr(args, name) is not None]
    if args.time_pooling != "none":
        clip_options.append("--time-pooling")
    if args.clips is None and clip_options:
        raise ValueError(f"{', '.join(clip_options)} apply to clips: give --clips FOLDER")
    if args.clips is not None and args.stimulus_ids is not None:
        raise ValueError("--stimulus-ids maps image files; clips take their file names as ids")
    device = _rank_device(args.device)
    if args.clips is not None:
        from neuroalign.data.clips import ClipSet

        stimuli = ClipSet(args.clips, args.frames, args.fps, args.stride,
                          frame_rate=args.frame_rate)
    else:
        stimuli = _stimuli_from_arg(args.stimuli, args.stimulus_ids)
    loaded = _load(args, device, args.image_size, args.mean, args.std, clips=args.clips is not None)
    model, transform, attrs = loaded.model, loaded.transform, dict(loaded.attrs)
    pooling = args.pooling
    if pooling is not None and pooling.isdigit():
        pooling = int(pooling)
    elif pooling == "none":
        pooling = None
    attrs["input_size"] = loaded.preprocessing.size
    try:
        path = _extract(args, model, stimuli, transform, device, pooling, attrs)
    except UnknownLayerError as err:
        raise err.with_hint(f"neuroalign layers {shlex.quote(args.model)}") from None
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(f"activations: {path}")


def _rank_device(device: str):
    """``--device``: under torchrun ``auto`` and ``cuda`` are this process's GPU."""
    from neuroalign.extraction.shards import rank_device
    from neuroalign.training.distributed import env_world
    from neuroalign.training.trainer import resolve_device

    if env_world()[1] > 1:
        return rank_device(device)
    return resolve_device(device)


def _stimuli_from_arg(text: str, stimulus_ids):
    """A registered stimulus set, or a folder of images (ids from a CSV map if given)."""
    from neuroalign.data.stimuli import StimulusSet
    from neuroalign.data.stimulus_sets import STIMULUS_SETS, load_stimulus_set

    if text in STIMULUS_SETS or not Path(text).is_dir():
        if stimulus_ids is not None and text in STIMULUS_SETS:
            raise ValueError(f"--stimulus-ids maps the files of a folder; the registered set "
                             f"{text} has its own ids.")
        return load_stimulus_set(text)
    return StimulusSet.from_folder(text, stimulus_ids=stimulus_ids)


def _extract(args, model, stimuli, transform, device, pooling, attrs):
    from neuroalign.extraction import extract

    layers = args.layers[0] if args.layers in (["all"], ["blocks"]) else args.layers
    return extract(model, stimuli, layers, out=args.out, transform=transform,
                   batch_size=args.batch_size, device=device, dtype=args.dtype, pooling=pooling,
                   tokens=args.tokens, projection=args.projection, n_components=args.n_components,
                   fit_stimuli=args.pca_fit, mask=args.mask, seed=args.seed,
                   compression=None if args.compression == "none" else args.compression,
                   compression_level=args.compression_level,
                   compression_threads=args.compression_threads, resume=args.resume,
                   overwrite=args.overwrite, attrs=attrs,
                   output_element=_output_elements(args.output_element),
                   time_pooling=None if args.time_pooling == "none" else args.time_pooling)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive int; got {text}")
    return value


def _output_elements(pairs):
    """LAYER=KEY pairs -> {layer: int index or str key}."""
    if not pairs:
        return None
    chosen = {}
    for pair in pairs:
        layer, sep, key = pair.rpartition("=")
        if not sep or not layer or not key:
            raise ValueError(f"--output-element takes LAYER=KEY pairs; got {pair!r}.")
        chosen[layer] = int(key) if key.lstrip("-").isdigit() else key
    return chosen


def add_layers(sub):
    p = sub.add_parser("layers", help="list a model's layers with their output shapes",
                       description="Run the model once on an input of zeros and print every module "
                       "path that extract --layers accepts, with the shape it outputs; repeated "
                       "blocks are shown once as blocks.{0…11} (--expand lists each). Layers marked "
                       "'default' are what extract takes without --layers ('--layers blocks' is "
                       "every repeated block).")
    _add_model_args(p)
    p.add_argument("--image-size", type=_positive_int,
                   help="input size of the dry run (default: the model's own preprocessing)")
    p.add_argument("--expand", action="store_true", help="one line per module, repeated blocks too")
    p.add_argument("--frames", type=_positive_int, default=16,
                   help="frames of the dry run's clip, for video models (default 16)")
    p.set_defaults(run=_run_layers)


def _run_layers(args):
    from neuroalign.extraction import block_groups, layer_shapes, resolve_layers

    loaded = _load(args, "cpu", args.image_size)
    model, size = loaded.model, loaded.preprocessing.size
    clip = {"CTHW": (3, args.frames), "TCHW": (args.frames, 3)}.get(loaded.preprocessing.clip_layout or "")
    input_shape = (*(clip or (3,)), size, size)
    shapes = layer_shapes(model, input_shape)
    default = resolve_layers(model, None)
    groups = block_groups(model)
    print(f"{args.model}: {type(model).__name__}, input {'×'.join(map(str, input_shape))}; default layers: "
          f"{_span(default)} ({len(default)})")
    rows: dict[str, tuple[list, bool]] = {}
    for name, shape in shapes.items():
        key = name if args.expand else _collapse(name, groups)
        seen, is_default = rows.get(key, ([], False))
        rows[key] = (seen + [shape], is_default or name in default)
    width = max(map(len, rows), default=0)
    for key, (seen, is_default) in rows.items():
        shape = seen[0] if all(s == seen[0] for s in seen) else "varies"
        shown = "not called" if shape is None else ("×".join(map(str, shape)) if shape != "varies" else shape)
        print(f"{key:<{width}}  {shown}{'   (default)' if is_default else ''}")


def _collapse(name: str, groups: dict[str, list[str]]) -> str:
    """blocks.3.attn -> blocks.{0…11}.attn for a module inside a repeated block."""
    for container, blocks in groups.items():
        for block in blocks:
            if name == block or name.startswith(block + "."):
                first, last = blocks[0].rsplit(".", 1)[-1], blocks[-1].rsplit(".", 1)[-1]
                prefix = f"{container}." if container else ""
                return f"{prefix}{{{first}…{last}}}{name[len(block):]}"
    return name


def _span(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}" if names else "none"


def add_merge(sub):
    p = sub.add_parser(
        "merge", help="merge the shards of a sharded extraction (torchrun) into one file",
        description="Write the shard files a manifest names (from extract under torchrun) into "
        "one activation file, as a single process would have written it: the same values, ids, "
        "coordinates, attributes, compression and chunks. The file appears under its name only "
        "when complete.")
    p.add_argument("manifest", type=Path, help="the manifest (OUT's .manifest.json)")
    p.add_argument("--out", required=True, type=Path, help="the activation file to write (.nc)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--compression-threads", type=int,
                   help="threads deflating chunks (default: one per CPU core, at most 8)")
    p.set_defaults(run=_run_merge)


def _run_merge(args):
    from neuroalign.activations import merge_shards

    path = merge_shards(args.manifest, args.out, overwrite=args.overwrite,
                        compression_threads=args.compression_threads)
    print(f"activations: {path}")
