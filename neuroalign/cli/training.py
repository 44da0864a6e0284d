"""Sub-commands that train: ``demo`` (the whole chain) and ``pretrain``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_demo", "add_pretrain"]


def add_demo(sub):
    p = sub.add_parser(
        "demo", help="run the whole chain on real data (pretrain → extract → analyse)",
        description="Pretrain the FocusMIM conv autoencoder with periphery masking on CIFAR-10, "
        "extract its encoder blocks for the 92 Kriegeskorte stimuli, and compute per layer the "
        "decorrelation metric, a CIFAR-10 linear-probe accuracy and RSA against human IT with "
        "the noise ceiling. Writes activations (netCDF), results.nc and a figure into --out.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--quick", action="store_true",
                   help="a first look in under a minute on 2 CPU cores: 40 steps of batch 64, "
                        "20 + 10 CIFAR-10 images a class for the probe (options given override)")
    p.add_argument("--steps", type=int, help="pretraining steps (default 400, ~3 min on 2 idle CPU cores)")
    p.add_argument("--batch-size", type=int, help="pretraining batch size (default 128)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--probe-train-per-class", type=int,
                   help="CIFAR-10 training images per class for the linear probe (default 200)")
    p.add_argument("--probe-test-per-class", type=int,
                   help="CIFAR-10 test images per class the probe is scored on (default 100)")
    p.add_argument("--device", default="auto", help="'auto' (GPU when there is one), 'cpu', 'cuda', 'cuda:1' …")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--overwrite", action="store_true", help="run again into an --out that holds a demo run")
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from neuroalign.demo import DemoSettings, run_demo

    given = {name: getattr(args, name) for name in
             ("steps", "batch_size", "lr", "probe_train_per_class", "probe_test_per_class")
             if getattr(args, name) is not None}
    given.update(device=args.device, seed=args.seed)
    settings = DemoSettings.first_look(**given) if args.quick else DemoSettings(**given)
    run_demo(args.out, settings, overwrite=args.overwrite)


def add_pretrain(sub):
    p = sub.add_parser(
        "pretrain", help="pretrain a model from a TOML recipe",
        description="Pretrain by masked-image modeling as a recipe says (see pretrain/*.toml). "
        "Writes checkpoint.pt (resumable) and log.csv (loss, learning rate, latent "
        "decorrelation, images/s) into --out; a folder holding a checkpoint needs --resume "
        "(continue it) or --overwrite (start afresh). Ctrl-C or SIGTERM ends the current "
        "step, writes a checkpoint and prints the command that resumes. Several "
        "GPUs or nodes: torchrun --nproc_per_node N -m neuroalign pretrain … "
        "(batch_size is the global batch: the result equals the single-process run).")
    p.add_argument("recipe", type=Path, help="TOML recipe (keys of neuroalign.training.PretrainConfig)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--steps", type=int, help="override the recipe's number of steps")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--device", help="override the device ('auto', 'cpu', 'cuda' …)")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--max-images", type=int, help="train on the first N images only")
    p.add_argument("--data-path", help="image folder (dataset = 'folder') or STL-10 root")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (GPU); --no-amp turns it off")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (faster convolutions on recent GPUs)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run whose checkpoint --out holds (same recipe)")
    again.add_argument("--overwrite", action="store_true",
                       help="start afresh even if --out holds a checkpoint (it is replaced)")
    p.set_defaults(run=_run_pretrain)


def _run_pretrain(args):
    from neuroalign.training import load_config, pretrain

    config = load_config(args.recipe, steps=args.steps, batch_size=args.batch_size,
                         device=args.device, seed=args.seed, lr=args.lr, max_images=args.max_images,
                         data_path=args.data_path, amp=args.amp, channels_last=args.channels_last,
                         compile=args.compile)
    path = pretrain(config, args.out, resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one report
        print(f"checkpoint: {path}\nlog:        {args.out / 'log.csv'}")
