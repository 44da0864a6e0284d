"""Pretraining: settings, the loop, checkpoints."""

from neuroalign.training.checkpoint import load_checkpoint, load_model, save_checkpoint, sha256_file
from neuroalign.training.config import PretrainConfig, load_config
from neuroalign.training.log import plot_log, read_log
from neuroalign.training.trainer import pretrain

__all__ = [
    "PretrainConfig",
    "load_config",
    "pretrain",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "sha256_file",
    "plot_log",
    "read_log",
]
