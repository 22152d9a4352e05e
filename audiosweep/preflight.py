"""Checks before any work: a run that cannot succeed is refused in seconds, not found out after training."""

from __future__ import annotations

from .config import Config
from .data import clip_samples
from .features import check_clip_length, n_frames
from .memory import check_fits_in_memory
from .results import check_results_dir
from .training import check_model_input

N_CLASSES = 50  # the head's width does not change what input the body accepts


def check_before_work(cfg: Config) -> None:
    """Raise a ConfigError naming the keys when the results folder cannot take records, the clips are too short
    for the STFT, the architecture cannot take the spectrogram, or a CPU run's batch cannot fit in memory."""
    check_results_dir(cfg.results_dir)
    n_samples = clip_samples(cfg)
    check_clip_length(cfg, n_samples)
    frames = n_frames(cfg, n_samples)
    check_model_input(cfg, frames, N_CLASSES)
    check_fits_in_memory(cfg, frames, N_CLASSES)
