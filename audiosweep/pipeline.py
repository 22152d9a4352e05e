"""A run's Learner from its prepared data: features on the device, normalisation, the augmented training batches,
the DataLoaders and the model. train.py trains it; ``--lr_find`` (:mod:`audiosweep.lr_find`) probes it."""

from __future__ import annotations

import time
from typing import NamedTuple

import torch
from fastai.learner import Learner

from .augment import TrainingBatches, augmented
from .config import Config
from .data import AudioData
from .device import feature_dtype
from .features import compute_features, normalize, stage_waveforms
from .loaders import make_dls
from .training import build_learner


class Built(NamedTuple):
    learn: Learner
    stats: object  # the normalisation statistics (evaluation and the record need them)
    source: torch.Tensor | None  # the waveforms on the device, where augmentations draw views from them
    feature_s: float


def learner_for(cfg: Config, data: AudioData, device: torch.device, cbs: list) -> Built:
    """The Learner of ``cfg`` over ``data`` with callbacks ``cbs``; prints the clip counts and feature shape."""
    t_feat = time.time()
    feats = compute_features(data.waveforms, cfg, device, out_dtype=feature_dtype(cfg, device))
    feats, stats = normalize(feats, cfg.normalize, data.train_idx)
    feature_s = time.time() - t_feat
    held = f" / {len(data.test_idx)} held-out test" if len(data.test_idx) else ""
    print(f"{len(data.train_idx)} training / {len(data.valid_idx)} validation{held} clips, {len(data.classes)} "
          f"classes, features {(cfg.n_channels, *feats.shape[2:])} on {device} in {feature_s:.1f}s")
    batches = TrainingBatches(cfg, device, stats) if augmented(cfg) else None  # validation: never drawn anew
    source = stage_waveforms(data.waveforms, device) if batches and batches.from_waveforms else None
    # view_channels: every clip's views (augmented ones drawn once) for validation; training serves row numbers
    feats, train_source = batches.with_views(feats, source) if batches else (feats, None)
    dls = make_dls(feats, data.targets, data.train_idx, data.valid_idx, cfg, channels_last=device.type == "cuda",
                   device=device, train_source=train_source, train_transform=batches)
    return Built(build_learner(cfg, dls, cfg.n_channels, len(data.classes), device, cbs), stats, source, feature_s)
