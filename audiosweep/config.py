"""The one source of truth for every knob: a typed dataclass, its validation, and the CLI built from it.

Values flow defaults <- ``--config file.yaml`` <- command line (``--key=value`` or ``--key value``)
<- ``wandb.config`` (when a sweep sets it). ``--help``, the W&B config and result records all derive
from :class:`Config`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from .cli_flags import ArgumentParser
from .errors import ConfigError

# What a knob is to the rest of the toolkit (its ``role`` metadata):
SETTING = "setting"  # what a run computes: part of its identity, compared by analysis
REPLICATE = "replicate"  # which repeat of a setting (seed, validation fold): identity, but pooled by analysis
ENVIRONMENT = "environment"  # where things live and how the run executes: not part of its identity
ROLES = (SETTING, REPLICATE, ENVIRONMENT)


@dataclass(frozen=True)
class Bounds:
    """An interval of allowed values; ``None`` is unbounded. Infinite and NaN numbers are never inside."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        lo_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return lo_ok and (self.high is None or (value < self.high if self.high_open else value <= self.high))

    def describe(self) -> str:
        lo, hi = _text(self.low), _text(self.high)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {lo}"
        if not (self.low_open or self.high_open):
            return f"in {lo}..{hi}"
        return f"in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"


def _text(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


POSITIVE, NON_NEGATIVE, PROBABILITY = Bounds(0, low_open=True), Bounds(0), Bounds(0, 1)
DEFAULT_F_MAX = 18000.0  # the report's best; capped at Nyquist when f_max is not given


def knob(default: Any, help: str, group: str, *, role: str = SETTING, label: str | None = None,
         unit: str | None = None, bounds: Bounds | None = None, **extra: Any) -> Any:
    """A config field with its one-line meaning, ``--help`` group, role, axis label, unit and bounds."""
    assert role in ROLES, role
    kind = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    meta = {"help": help, "group": group, "role": role, "label": label, "unit": unit, "bounds": bounds, **extra}
    return field(metadata=meta, **kind)


@dataclass
class Config:
    """Every knob of a run. Defaults are the report's best settings (ResNet-18 on ESC-50)."""

    # spectrogram
    sample_rate: int = knob(44100, "audio is resampled to this rate (Hz)", "spectrogram", label="sample rate",
                            unit="Hz", bounds=POSITIVE)
    n_fft: int = knob(4096, "FFT size in samples", "spectrogram", label="FFT size", unit="samples", bounds=POSITIVE)
    hop_length: int | None = knob(308, "STFT hop in samples (308 = 7 ms at 44.1 kHz)", "spectrogram",
                                  label="STFT hop", unit="samples", bounds=POSITIVE)
    hop_length_ms: float | None = knob(None, "STFT hop in ms, instead of hop_length", "spectrogram",
                                       label="STFT hop", unit="ms", bounds=POSITIVE)
    win_length: int | None = knob(2205, "STFT window in samples (2205 = 50 ms at 44.1 kHz)", "spectrogram",
                                  label="STFT window", unit="samples", bounds=POSITIVE)
    win_length_ms: float | None = knob(None, "STFT window in ms, instead of win_length", "spectrogram",
                                       label="STFT window", unit="ms", bounds=POSITIVE)
    n_mels: int = knob(224, "number of mel bands (spectrogram height)", "spectrogram", label="mel bands",
                       bounds=POSITIVE)
    f_min: float = knob(0.0, "lowest mel frequency (Hz)", "spectrogram", label="lowest mel frequency", unit="Hz",
                        bounds=NON_NEGATIVE)
    f_max: float | None = knob(None, f"highest mel frequency (Hz), at most sample_rate/2; null = "
                               f"min({DEFAULT_F_MAX:g}, sample_rate/2)", "spectrogram",
                               label="highest mel frequency", unit="Hz", bounds=POSITIVE)
    max_frames: int | None = knob(None, "pad (with the clip's lowest value) or crop (from the start) every "
                                  "spectrogram to this many frames; null = as computed", "spectrogram",
                                  label="frames", unit="frames", bounds=POSITIVE)
    view_channels: list[Literal["original", "augmented"]] = knob(
        ["original"], "input channels made of views of the same clip: original, or augmented (the run's "
        "augmentations drawn anew for each training batch, drawn once with a fixed seed for validation), e.g. "
        "[original, augmented]", "spectrogram", label="view channels")
    augmented_view: Literal["per_batch", "fixed"] = knob(
        "per_batch", "with an augmented view channel: per_batch (training batches draw it anew) | fixed (each "
        "clip's view drawn once from trial_num and used for training and validation alike, as the CNN + GPT-2 "
        "paper's preprocessing did); no effect without an augmented view", "spectrogram", label="augmented view")
    stacked_win_lengths: list[int] | None = knob(
        None, "one mel channel per window length in samples (multi-resolution input); replaces win_length",
        "spectrogram", label="stacked windows", unit="samples", bounds=POSITIVE)
    stacked_win_lengths_ms: list[float] | None = knob(
        None, "stacked_win_lengths in ms, instead of samples (int(round(ms * sample_rate / 1000)) each)",
        "spectrogram", label="stacked windows", unit="ms", bounds=POSITIVE)
    stacked_hop_lengths: list[int] | None = knob(
        None, "one STFT hop per stacked window, in samples (channels of different hops have different frame "
        "counts: give resize_to); replaces hop_length", "spectrogram", label="stacked hops", unit="samples",
        bounds=POSITIVE)
    stacked_hop_lengths_ms: list[float] | None = knob(
        None, "stacked_hop_lengths in ms, instead of samples", "spectrogram", label="stacked hops", unit="ms",
        bounds=POSITIVE)
    resize_to: list[int] | None = knob(
        None, "logmel: every channel's log-mel resized (bilinear, antialiased when shrinking: PIL's, as torchvision's "
        "Resize of the Palanisamy et al. code) to [n_mels, frames] after the log; null = as computed",
        "spectrogram", label="resized to", bounds=POSITIVE, when={"frontend": "logmel"})
    normalize: Literal["none", "sample", "global", "imagenet", "audioset"] = knob(
        "global", "none | sample (per clip) | global (training-split mean/std) | imagenet | audioset (AST's fixed "
        "AudioSet statistics of kaldi fbanks); the report's true = global, false = none", "spectrogram",
        label="normalisation")
    frontend: Literal["logmel", "kaldi"] = knob(
        "logmel", "logmel (power mel spectrogram in dB, batched on the device) | kaldi (Kaldi-compatible log mel "
        "filterbank, as AST and other AudioSet models were trained on; FFT size = next power of two >= window)",
        "spectrogram", label="front end")
    top_db: float | None = knob(80.0, "logmel: each clip's dB values (per channel) floored at top_db below its peak; "
                                "null = no floor (the report's fastaudio front end: AmplitudeToDB(top_db=None)); "
                                "log_scale ln and the kaldi front end have no floor and ignore it", "spectrogram",
                                label="dB range", unit="dB", bounds=POSITIVE,
                                when={"frontend": "logmel", "log_scale": "db"})
    log_scale: Literal["db", "ln"] = knob(
        "db", "logmel: db (10 log10 of the power, floored by top_db) | ln (natural log of power + 1e-6, as the "
        "Palanisamy et al. code; no floor: top_db is ignored)", "spectrogram", label="log scale",
        when={"frontend": "logmel"})
    stft_normalized: bool = knob(False, "logmel: the STFT divided by its window's L2 norm, as torchaudio's "
                                 "MelSpectrogram(normalized=True) of the report's fastaudio front end (torch.stft's "
                                 "own normalized=True divides by sqrt(n_fft) instead); the kaldi front end ignores it",
                                 "spectrogram", label="normalised STFT", when={"frontend": "logmel"})
    mel_scale: Literal["slaney", "htk"] = knob(
        "slaney", "logmel: the mel scale of the filterbank: slaney (librosa's default) | htk (torchaudio's "
        "MelSpectrogram default, the report's fastaudio front end); the kaldi front end has its own",
        "spectrogram", label="mel scale", when={"frontend": "logmel"})
    mel_norm: Literal["slaney", "none"] = knob(
        "slaney", "logmel: slaney (each mel filter scaled to unit area, librosa's default) | none (peak 1, "
        "torchaudio's MelSpectrogram default, the report's fastaudio front end)", "spectrogram",
        label="mel filter norm", when={"frontend": "logmel"})
    # model
    arch: str = knob("resnet18", "model architecture: a name below; timm/<any timm model name> (ImageNet weights "
                     "from the Hugging Face cache); ast = the Audio Spectrogram Transformer fine-tuned on AudioSet, "
                     "ast/<hub repo> another AST checkpoint (both set the spectrogram keys you leave out to AST's "
                     "front end: frontend kaldi, 16 kHz, 128 mels, 10 ms hop, 25 ms window, normalize audioset); "
                     "cnn_gpt2 = conv blocks feeding GPT-2's first gpt2_layers blocks (GPT-2 weights from the Hugging "
                     "Face cache), one token per time step (the paper: 16 kHz, 40 mels, 100 frames, normalize "
                     "sample); dual_stream = a frame-wise MLP and a small CNN in parallel, fused (the paper: 64 mels)",
                     "model", label="architecture", choices=lambda: _arch_names(patterns=True))
    pretrained: bool = knob(True, "start from pretrained weights (ImageNet, AudioSet for ast, GPT-2's for cnn_gpt2; "
                            "recorded false for architectures without them)", "model", label="pretrained weights")
    finetune: Literal["full", "head", "none"] = knob(
        "full", "how a pretrained body trains: full (freeze_epochs with the body frozen, then all layers with "
        "discriminative learning rates) | head (body frozen throughout: only the head trains) | none (no "
        "pretrained body: all layers from scratch, as pretrained false)", "model", label="fine-tuning")
    discriminative_lr: bool = knob(
        True, "finetune full: after the frozen epochs all layers train at discriminative learning rates, "
        "learning_rate/200 (lowest group) to learning_rate/2 (head), as fastai's fine_tune; false = every layer at "
        "learning_rate (with freeze_epochs 0: all layers from the first epoch at one rate, as the Palanisamy et al. "
        "code)", "model", label="discriminative learning rates", when={"finetune": "full"})
    gpt2_layers: int = knob(12, "cnn_gpt2: GPT-2 blocks (the pretrained checkpoint's first N of its 12; the paper's "
                            "from-scratch baseline: 6)", "model", label="GPT-2 blocks", bounds=Bounds(1))
    conv_channels: list[int] = knob([32, 64], "cnn_gpt2 and dual_stream: output channels of each conv block (conv, "
                                    "BatchNorm, ReLU, max-pool, dropout)", "model", label="conv channels",
                                    bounds=POSITIVE)
    mlp_widths: list[int] = knob([64, 64], "dual_stream: hidden widths of the MLP stream", "model",
                                 label="MLP widths", bounds=POSITIVE)
    mlp_context: int = knob(1, "dual_stream: consecutive frames in each window the MLP stream sees (flattened; valid "
                            "windows only, their hidden features averaged over the clip); 1 = one frame, 5 = the "
                            "DCASE 2017 baseline MLP's 0.1 s context at a 20 ms hop", "model",
                            label="MLP context", unit="frames", bounds=Bounds(1))
    fusion: Literal["concat", "sum", "mlp", "cnn"] = knob(
        "concat", "dual_stream: how the MLP's and the CNN's outputs are fused before the classifier: concat | sum (of "
        "each stream's class logits) | mlp or cnn (that stream alone: the paper's MLP baseline)", "model",
        label="fusion")
    # training
    n_epochs: int = knob(80, "epochs after the frozen ones", "training", label="epochs", bounds=POSITIVE)
    batch_size: int = knob(64, "clips per batch (at least 2: BatchNorm cannot train on one clip)", "training",
                           label="batch size", unit="clips", bounds=Bounds(2))
    accumulate: int = knob(1, "batches whose gradients add up before each optimiser step (fastai's "
                           "GradientAccumulation): the effective batch is batch_size x accumulate in less memory",
                           "training", label="accumulated batches", bounds=Bounds(1))
    learning_rate: float = knob(1e-2, "peak learning rate of the one-cycle schedule (the starting one of the "
                                "others)", "training", label="peak learning rate", bounds=POSITIVE)
    optimizer: Literal["adam", "adamw", "sgd", "adam_l2"] = knob(
        "adam", "adam (fastai's Adam: decoupled weight decay, none on BatchNorm and bias parameters, as fastai does by "
        "default) | adamw (PyTorch's AdamW through fastai's OptimWrapper: betas 0.9/0.999, eps 1e-8, decay on every "
        "parameter) | sgd (fastai's SGD, momentum 0.9) | adam_l2 (torch.optim.Adam's step: L2 weight decay added to "
        "the gradient of every parameter, BatchNorm and bias too, betas 0.9/0.999, eps 1e-8; fastai's Adam with "
        "decouple_wd false)", "training", label="optimizer")
    weight_decay: float = knob(0.01, "weight decay (fastai's default 0.01)", "training", label="weight decay",
                               bounds=NON_NEGATIVE)
    schedule: Literal["one_cycle", "plateau", "cosine", "constant", "step"] = knob(
        "one_cycle", "learning-rate schedule: one_cycle (fastai's fit_one_cycle; fine_tune for pretrained bodies) | "
        "plateau (constant, times plateau_factor after plateau_patience epochs without a better validation "
        "accuracy: ReduceLROnPlateau) | cosine (cosine annealing to 0) | constant | step (times step_factor every "
        "step_size epochs or at each of step_milestones, set once per epoch: PyTorch's StepLR / MultiStepLR; each "
        "fit of fine_tune counts its own epochs)", "training", label="LR schedule")
    plateau_patience: int = knob(10, "plateau: epochs without a better validation accuracy before the learning rate "
                                 "drops", "training", label="plateau patience", unit="epochs", bounds=Bounds(1),
                                 when={"schedule": "plateau"})
    plateau_factor: float = knob(0.5, "plateau: the learning rate is multiplied by this when it drops", "training",
                                 label="plateau factor", bounds=Bounds(0, 1, low_open=True, high_open=True),
                                 when={"schedule": "plateau"})
    step_size: int | None = knob(None, "step: the learning rate is multiplied by step_factor every step_size epochs "
                                 "(StepLR; the Palanisamy et al. pretrained models: 30)", "training",
                                 label="LR step period", unit="epochs", bounds=Bounds(1), when={"schedule": "step"})
    step_milestones: list[int] | None = knob(
        None, "step: instead of step_size, the epochs (0-based, increasing) at which the learning rate is multiplied "
        "by step_factor (MultiStepLR; the Palanisamy et al. random-init models: [300, 350])", "training",
        label="LR step epochs", unit="epochs", bounds=Bounds(1), when={"schedule": "step"})
    step_factor: float = knob(0.1, "step: the learning rate is multiplied by this at each step", "training",
                              label="LR step factor", bounds=Bounds(0, 1, low_open=True, high_open=True),
                              when={"schedule": "step"})
    loss: Literal["cross_entropy", "kl_div"] = knob(
        "cross_entropy", "cross_entropy | kl_div (KL divergence of the log-softmax from the smoothed one-hot target)",
        "training", label="loss")
    label_smoothing: float = knob(0.0, "share of each target spread evenly over all classes", "training",
                                  label="label smoothing", bounds=Bounds(0, 1, high_open=True))
    unfreeze_schedule: list[list[int]] | None = knob(
        None, "progressive unfreezing: [[epoch, blocks], ...], the top `blocks` blocks of the model's body (and its "
        "head) trainable from `epoch` (0-based) on, e.g. [[0,2],[30,4],[60,6]], in one fit of n_epochs (more blocks "
        "than the model has: all of them, with a warning); null = fastai's fine_tune (freeze_epochs, then all "
        "layers). Blocks: cnn_gpt2's GPT-2 blocks; a torchvision model's body layers with weights (ResNet: conv1, "
        "bn1, layer1..4)", "training", label="unfreezing schedule", bounds=NON_NEGATIVE)
    checkpoint: Literal["last", "best"] = knob(
        "last", "which epoch's weights the run is evaluated (and saved) with: last | best (the best validation "
        "accuracy, fastai's TrackerCallback)", "training", label="evaluated epoch")
    mix_up: float = knob(0.1, "MixUp alpha (0 = off; the report's true = 0.4, fastai's default)", "training",
                         label="MixUp alpha", bounds=NON_NEGATIVE)
    freeze_epochs: int = knob(1, "epochs training only the head of a pretrained model first (recorded 0 when the "
                                 "model starts without pretrained weights)", "training", label="frozen epochs",
                              bounds=NON_NEGATIVE)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = knob(
        "auto", "auto = bf16 (or fp16) on GPU, fp32 on CPU", "training", label="precision")
    compile: bool = knob(False, "torch.compile the model", "training", label="torch.compile")
    lr_find: bool = knob(False, "instead of training, run fastai's learning-rate finder on this run's data and "
                         "model: RESULTS_DIR/<run_id>.lr_find.png and .lr_find.json, the suggestions printed; no "
                         "result record", "training", role=ENVIRONMENT)
    device: str = knob("auto", "auto | cpu | cuda | cuda:N", "training", role=ENVIRONMENT)
    num_workers: int = knob(4, "threads decoding audio when the waveform cache is built", "training",
                            role=ENVIRONMENT, bounds=NON_NEGATIVE)
    # augmentation (training batches only, on the device; see audiosweep/augment.py)
    gain_p: float = knob(0.0, "probability of a random gain per clip", "augmentation", label="gain probability",
                         bounds=PROBABILITY)
    gain_db: float = knob(6.0, "gain drawn uniformly in +-gain_db dB", "augmentation", label="gain range",
                          unit="dB", bounds=NON_NEGATIVE, needs="gain_p")
    shift_p: float = knob(0.0, "probability of a random time shift per clip (signal_shift: 0.5)", "augmentation",
                          label="time shift probability", bounds=PROBABILITY)
    shift_max: float = knob(0.2, "time shift drawn uniformly in +-shift_max of the clip length", "augmentation",
                            label="time shift range", bounds=Bounds(0, 1), needs="shift_p")
    shift_roll: bool = knob(False, "shifted-out audio wraps around (else the gap is silence)", "augmentation",
                            label="time shift wraps", needs="shift_p")
    noise_p: float = knob(0.0, "probability of additive noise per clip (add_noise: 1)", "augmentation",
                          label="noise probability", bounds=PROBABILITY)
    noise_snr_min: float = knob(28.0, "lowest signal-to-noise ratio of the added noise (dB)", "augmentation",
                                label="noise SNR low", unit="dB", needs="noise_p")
    noise_snr_max: float = knob(37.0, "highest signal-to-noise ratio of the added noise (dB); 28-37 dB is what "
                                "fastaudio's AddNoise() gives on ESC-50 clips", "augmentation",
                                label="noise SNR high", unit="dB", needs="noise_p")
    noise_sigma_max: float | None = knob(None, "white Gaussian noise of an absolute standard deviation drawn per clip "
                                         "uniformly in [0, noise_sigma_max] (waveform amplitude, full scale 1), "
                                         "instead of the SNR range; the dual-stream paper's: 0.005; null = the SNR "
                                         "form", "augmentation", label="noise std high", bounds=POSITIVE,
                                         needs="noise_p")
    noise_color: Literal["white", "pink", "brown", "blue", "violet"] = knob(
        "white", "spectrum of the noise: white (flat), pink (1/f), brown (1/f^2), blue (f), violet (f^2)",
        "augmentation", label="noise colour", needs="noise_p")
    polarity_p: float = knob(0.0, "probability of inverting a clip's polarity", "augmentation",
                             label="polarity inversion probability", bounds=PROBABILITY)
    pitch_p: float = knob(0.0, "probability of a random pitch shift per clip (pitch_shift: 1)", "augmentation",
                          label="pitch shift probability", bounds=PROBABILITY)
    pitch_semitones: float = knob(3.0, "pitch shift drawn uniformly in +-pitch_semitones", "augmentation",
                                  label="pitch shift range", unit="semitones", bounds=Bounds(0, 12),
                                  needs="pitch_p")
    pitch_integer: bool = knob(False, "pitch shift drawn as a whole number of semitones, uniformly from "
                               "-pitch_semitones..pitch_semitones (the Palanisamy code's {-2..2}); false = any "
                               "value in the range", "augmentation", label="whole-semitone pitch shift",
                               needs="pitch_p")
    stretch_p: float = knob(0.0, "probability of a random time stretch per clip (cropped or padded back)",
                            "augmentation", label="time stretch probability", bounds=PROBABILITY)
    stretch_max: float = knob(0.2, "time stretch rate drawn uniformly in 1 +- stretch_max", "augmentation",
                              label="time stretch range", bounds=Bounds(0, 1, high_open=True), needs="stretch_p")
    stretch_min_rate: float | None = knob(None, "lowest time stretch rate (> 1 = faster); null = 1 - stretch_max",
                                          "augmentation", label="time stretch lowest rate", bounds=POSITIVE,
                                          needs="stretch_p")
    stretch_max_rate: float | None = knob(None, "highest time stretch rate, e.g. 0.9 and 1.2 for the Palanisamy "
                                          "code's U(0.9, 1.2); null = 1 + stretch_max", "augmentation",
                                          label="time stretch highest rate", bounds=POSITIVE, needs="stretch_p")
    warp_domain: Literal["spectrogram", "waveform"] = knob(
        "spectrogram", "where pitch shift and time stretch act: spectrogram (a linear resampling of the logmel "
        "front end's power spectrogram, the fast option) | waveform (torchaudio's phase vocoder and resampling "
        "of the waveform, as librosa in the Palanisamy code; any front end)", "augmentation",
        label="pitch/stretch domain", needs=("pitch_p", "stretch_p"))
    keep_clean_copy: bool = knob(False, "each training epoch serves every training clip twice: once without "
                                 "augmentation, once augmented (the Palanisamy code's doubled training set)",
                                 "augmentation", label="clean copy beside the augmented")
    spec_freq_masks: int = knob(0, "SpecAugment frequency masks per clip", "augmentation",
                                label="frequency masks", bounds=NON_NEGATIVE)
    spec_freq_width: int = knob(24, "widest frequency mask, in mel bands", "augmentation",
                                label="frequency mask width", unit="mel bands", bounds=POSITIVE,
                                needs="spec_freq_masks")
    spec_time_masks: int = knob(0, "SpecAugment time masks per clip", "augmentation", label="time masks",
                                bounds=NON_NEGATIVE)
    spec_time_width: int = knob(64, "widest time mask, in frames", "augmentation", label="time mask width",
                                unit="frames", bounds=POSITIVE, needs="spec_time_masks")
    # data
    dataset: Literal["esc50", "esc10", "folder", "csv", "urbansound8k", "gtzan", "dcase2017_scenes"] = knob(
        "esc50", "esc50 | esc10 (its 10-class subset) | folder (your clips in data_dir/<class>/*.wav|flac|ogg) | "
        "csv (your clips listed in --metadata) | urbansound8k (10 classes, 10 official folds) | gtzan (10 music "
        "genres, 10 fixed stratified folds) | dcase2017_scenes (DCASE 2017 task 1 development set, TUT Acoustic "
        "Scenes 2017: 15 acoustic scenes, 10 s clips, 4 official folds)", "data", label="dataset")
    data_dir: str | None = knob(None, "dataset root; null = the dataset's own folder (data/ESC-50, "
                                "data/UrbanSound8K, data/GTZAN, data/DCASE2017-scenes), downloaded there when absent. "
                                "It holds: for esc50/esc10 meta/esc50.csv and audio/, for urbansound8k "
                                "metadata/UrbanSound8K.csv and audio/fold1..10/, for gtzan genres/<genre>/, for "
                                "dcase2017_scenes evaluation_setup/fold1..4_evaluate.txt and audio/ (its meta and 10 "
                                "audio archives unpacked together); for folder (needed) one sub-folder "
                                "per class; for csv the folder the metadata's file paths are relative to (null: the "
                                "metadata's)", "data", role=ENVIRONMENT)
    metadata: str | None = knob(None, "dataset csv: CSV file with columns file (relative to data_dir), label, and "
                                "optionally fold (positive integers, for split official) and group (clips of one "
                                "recording); looked up as given, then in data_dir", "data", role=ENVIRONMENT)
    clip_seconds: float | None = knob(None, "every clip is cropped (to its start) or padded to this length; null = "
                                      "the dataset's (urbansound8k 4 s, gtzan 30 s, dcase2017_scenes 10 s, the "
                                      "others 5 s)", "data",
                                      label="clip length", unit="s", bounds=POSITIVE)
    pad_mode: Literal["zeros", "repeat"] = knob(
        "zeros", "how clips shorter than clip_seconds are padded: zeros (silence after the clip) | repeat (the clip "
        "again, as often as it takes)", "data", label="padding")
    download_url: str | None = knob(None, "where the dataset archive (zip or tar) is downloaded from; null = the "
                                    "dataset's official archive. For a dataset in several archives "
                                    "(dcase2017_scenes) the folder URL that holds them all under their official "
                                    "names (a mirror)", "data", role=ENVIRONMENT)
    download: bool | None = knob(None, "fetch a downloadable dataset missing from data_dir: null = only into the "
                                 "dataset's own folder (data_dir null) or an existing data_dir (a data_dir that "
                                 "does not exist is refused: a typo) | true = also into a new data_dir | false = "
                                 "never (a missing dataset is refused)", "data", role=ENVIRONMENT)
    cache_dir: str = knob("~/.cache/audiosweep", "decoded waveform cache (never written into data_dir)", "data",
                          role=ENVIRONMENT)
    fingerprint: Literal["stat", "content"] = knob(
        "stat", "what identifies a clip for the waveform cache and the record: stat (name, size, modification "
        "time) | content (a hash of its bytes: catches a clip replaced with its size and time restored; reads "
        "every clip each run: 0.03 s for the 414 clips of the ESC-50 slice (160 MB) when the OS has them cached, "
        "disk speed otherwise)", "data", role=ENVIRONMENT, label="clip identity")
    split: Literal["official", "stratified"] = knob(
        "official", "official (validate on `fold`; esc50/esc10, urbansound8k, gtzan, dcase2017_scenes, or csv "
        "with a fold column) | stratified (valid_pct per class, grouped by recording: src_file of ESC-50, fsID of "
        "UrbanSound8K, the location of dcase2017_scenes, the group column of csv, else each file alone)", "data",
        label="split")
    fold: int | None = knob(None, "validation fold of the official split (esc50/esc10: 1..5; urbansound8k, gtzan: "
                            "1..10; dcase2017_scenes: 1..4, its fold<k>_evaluate.txt; csv: a value of its fold "
                            "column); null = 1, or with test_fold the fold after it (cyclically; records hold the "
                            "fold used)", "data", role=REPLICATE, label="validation fold", bounds=Bounds(1))
    test_fold: int | None = knob(None, "official split: the fold held out as the test set, seen by neither training "
                                 "nor model selection (checkpoint best, plateau, early termination look at `fold`); "
                                 "the run trains on the other folds and records summary.test_accuracy; null = no "
                                 "test set", "data", role=REPLICATE, label="test fold", bounds=Bounds(1),
                                 when={"split": "official"})
    test_pct: float = knob(0.0, "stratified split: share of each class held out as the test set (grouped by "
                           "recording as valid_pct), the same clips whatever trial_num (a fixed seed, as HEAR keeps "
                           "its test set across seeds); 0 = no test set", "data", label="test share",
                           bounds=Bounds(0, 1, high_open=True), when={"split": "stratified"})
    valid_pct: float = knob(0.2, "validation share of the stratified split (of the clips left after test_pct)", "data",
                            label="validation share", bounds=Bounds(0, 1, low_open=True, high_open=True))
    trial_num: int = knob(1, "trial number: seeds everything, and the stratified split", "data", role=REPLICATE,
                          label="trial", bounds=Bounds(0, 2**32 - 1))  # numpy's seed range
    esc10: bool = knob(False, "the ESC-10 subset of esc50 (10 classes): the same as dataset esc10, which records "
                       "hold instead", "data", label="ESC-10 subset")
    allow_missing: bool = knob(False, "use the listed clips that are present and valid instead of failing", "data",
                               label="allow missing clips")
    # logging
    project: str = knob("audiosweep-esc50", "W&B project", "logging", role=ENVIRONMENT)
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = knob(
        "auto", "auto = online with W&B credentials, else offline", "logging", role=ENVIRONMENT)
    wandb_verbose: bool = knob(False, "W&B's own console lines in full (its version, the run's history and summary, "
                               "the sync command); false: only where the run's W&B files go", "logging",
                               role=ENVIRONMENT, label="W&B console lines")
    results_dir: str = knob("results", "folder for this run's result record", "logging", role=ENVIRONMENT)
    pretrained_path: str | None = knob(None, "local pretrained weights (machines without internet): a weights file "
                                       "for a timm model, a checkpoint folder (config.json, model.safetensors) for ast "
                                       "and cnn_gpt2 (a GPT-2 checkpoint)",
                                       "model", role=ENVIRONMENT)
    save_model: Literal["none", "final", "best"] = knob(
        "none", "save the weights beside the record: after the last epoch (final) or at the best validation "
        "accuracy (best); none by default, as a DenseNet-161 takes about 110 MB (the report's 1,430 runs: 150 GB)",
        "logging", role=ENVIRONMENT)
    checkpoint_every: int = knob(
        1, "write a resumable checkpoint (model, optimizer, schedule, RNG, history) beside the record every this "
        "many epochs, removed once the run finishes; 0 = off", "logging", role=ENVIRONMENT, unit="epochs",
        bounds=NON_NEGATIVE)
    resume: str | None = knob(
        None, "RUN_ID of a failed or interrupted run (same results_dir and settings) to continue from its last "
        "checkpoint, under the same run id", "logging", role=ENVIRONMENT)
    tta: int = knob(0, "test-time augmentation: also evaluate the validation clips as the mean over this many views "
                    "(tta_views: the plain one and tta-1 augmented with the run's augmentations, or time shifts if it "
                    "has none); 0 or 1 = off", "training", label="TTA views", bounds=NON_NEGATIVE)
    tta_views: Literal["plain+augmented", "augmented"] = knob(
        "plain+augmented", "which views TTA averages: plain+augmented (the plain view and tta-1 augmented ones) | "
        "augmented (tta augmented views, never the plain one, as the ResNet-34 + TTA post)", "training",
        label="TTA view set")

    @property
    def win_lengths(self) -> list[int]:
        """Window length of each spectrogram channel, in samples."""
        if self.stacked_win_lengths or self.stacked_win_lengths_ms:
            return _stacked(self.stacked_win_lengths, self.stacked_win_lengths_ms, self.sample_rate)
        return [_samples(self.win_length, self.win_length_ms, self.sample_rate)]

    @property
    def hop_lengths(self) -> list[int]:
        """STFT hop of each spectrogram channel, in samples: the stacked hops, else ``hop_length`` for all."""
        if self.stacked_hop_lengths or self.stacked_hop_lengths_ms:
            return _stacked(self.stacked_hop_lengths, self.stacked_hop_lengths_ms, self.sample_rate)
        return [self.hop_samples] * len(self.win_lengths)

    @property
    def stacked_hops(self) -> bool:
        return bool(self.stacked_hop_lengths or self.stacked_hop_lengths_ms)

    @property
    def dataset_name(self) -> str:
        """The registered dataset the run uses (``esc10`` true on esc50 is dataset esc10)."""
        return "esc10" if self.esc10 and self.dataset == "esc50" else self.dataset

    @property
    def data_root(self) -> str:
        """``data_dir``, or when it is null the dataset's own folder (csv: the metadata file's folder)."""
        if self.data_dir is not None:
            return self.data_dir
        if self.dataset == "csv" and self.metadata:
            return str(Path(self.metadata).expanduser().parent)
        return _dataset(self.dataset_name).default_dir

    @property
    def clip_length(self) -> float:
        """Seconds of every clip: ``clip_seconds``, or the dataset's own length."""
        return self.clip_seconds if self.clip_seconds is not None else _dataset(self.dataset_name).default_seconds

    @property
    def valid_fold(self) -> int:
        """The validation fold of the official split (:func:`valid_fold`)."""
        return valid_fold(self.fold, self.test_fold, self.dataset_name)

    @property
    def stretch_offsets(self) -> tuple[float, float]:
        """The range of the time stretch rate minus 1: ``stretch_min_rate``/``stretch_max_rate`` less 1, else
        +-``stretch_max`` exactly (the draws of runs before those rates existed, bit for bit)."""
        lo, hi = self.stretch_min_rate, self.stretch_max_rate
        return (-self.stretch_max if lo is None else lo - 1), (self.stretch_max if hi is None else hi - 1)

    @property
    def stretch_rates(self) -> tuple[float, float]:
        """The lowest and highest time stretch rate (:attr:`stretch_offsets` plus 1)."""
        lo, hi = self.stretch_offsets
        return 1 + lo, 1 + hi

    @property
    def hop_samples(self) -> int:
        return _samples(self.hop_length, self.hop_length_ms, self.sample_rate)

    @property
    def fft_size(self) -> int:
        """The FFT size the front end uses: ``n_fft``, or the kaldi front end's own (:func:`kaldi_fft_size`)."""
        return kaldi_fft_size(self.to_dict()) if self.frontend == "kaldi" else self.n_fft

    @property
    def n_channels(self) -> int:
        """Input channels: one per window length, for each view of the clip."""
        return len(self.win_lengths) * len(self.view_channels)

    @property
    def mel_f_max(self) -> float:
        """``f_max``, or when not given the report's 18 kHz capped at Nyquist."""
        return self.f_max if self.f_max is not None else min(DEFAULT_F_MAX, self.sample_rate / 2)

    def to_dict(self) -> dict[str, Any]:
        """Every key as given (what a later layer builds on); lists copied (dataclasses.asdict, 5x slower)."""
        return {f.name: copy.deepcopy(v) if isinstance(v := getattr(self, f.name), (list, dict)) else v
                for f in dataclasses.fields(self)}

    def effective_dict(self) -> dict[str, Any]:
        """Every key as the run uses it (what records, W&B and a run's identity hold): see :func:`effective`."""
        return effective(self.to_dict())


# The keys that switch an augmentation on: waveform ones (redone every epoch), then spectrogram masks.
WAVEFORM_AUGMENTATIONS = ("gain_p", "shift_p", "noise_p", "polarity_p", "pitch_p", "stretch_p")
AUGMENTATIONS = (*WAVEFORM_AUGMENTATIONS, "spec_freq_masks", "spec_time_masks")


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
TYPES = typing.get_type_hints(Config)
# Pairs of keys giving one quantity in two units: a layer that sets one form drops the other.
ALTERNATIVE_FORMS = {"hop_length": "hop_length_ms", "win_length": "win_length_ms",
                     "stacked_win_lengths": "stacked_win_lengths_ms", "stacked_hop_lengths": "stacked_hop_lengths_ms"}
ALTERNATIVE_FORMS.update({v: k for k, v in ALTERNATIVE_FORMS.items()})


@dataclass(frozen=True)
class Alias:
    """A key of the report's own scripts (jhartquist/fastaudio-esc-50, fastai-esc-50), mapped onto ours."""

    type: Any  # the type of value it takes
    targets: tuple[str, ...]  # the keys it sets
    help: str
    convert: Callable[[Any], dict[str, Any]] | None = None  # value -> values of the targets (None: the win lengths)


# Value forms of our own keys, the report's booleans: fastai's MixUp() default alpha for mix_up: true; for normalize,
# true = per-channel statistics of the training clips (fastaudio's SpecNormalize), false = none (fastai's ImageNet
# Normalize never touched the report's 1-channel spectrograms).
BOOLEAN_VALUES = {"mix_up": {True: 0.4, False: 0.0}, "normalize": {True: "global", False: "none"}}

# The report's keys and value forms, in one place. Their sweep files run unchanged; records hold our keys.
ALIASES: dict[str, Alias] = {
    "trial": Alias(int, ("trial_num",), "= trial_num", lambda v: {"trial_num": v}),
    "norm": Alias(bool, ("normalize",), "true = normalize global, false = normalize none (as normalize: true / "
                  "false)", lambda v: {"normalize": BOOLEAN_VALUES["normalize"][v]}),
    **{f"win_length_{i}": Alias(int, ("stacked_win_lengths",), f"window of stacked channel {i}: win_length_1..3 "
                                "give stacked_win_lengths") for i in (1, 2, 3)},
    "pitch_shift": Alias(bool, ("pitch_p",), "true = pitch_p 1 (+-3 semitones, as the report's PitchShifter)",
                         lambda v: {"pitch_p": 1.0 if v else 0.0}),
    "signal_shift": Alias(bool, ("shift_p",), "true = shift_p 0.5 (+-20 %%, fastaudio's SignalShifter)",
                          lambda v: {"shift_p": 0.5 if v else 0.0}),
    "add_noise": Alias(bool, ("noise_p",), "true = noise_p 1 (white, 28-37 dB SNR, fastaudio's AddNoise)",
                       lambda v: {"noise_p": 1.0 if v else 0.0}),
}


# train.py's --config FILE.yaml, which a sweep may vary too (a recipe of keys per value).
CONFIG_FILE_KEY = "config"


def key_type(key: str) -> Any:
    """The type of a config key, an alias, or ``config`` (a YAML file of keys)."""
    if key == CONFIG_FILE_KEY:
        return str
    return ALIASES[key].type if key in ALIASES else TYPES[key]


def resolve_aliases(layer: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """``layer`` with the report's keys replaced by ours; an alias given with its target is an error."""
    out = {k: v for k, v in layer.items() if k not in ALIASES}
    stacked = [coerce(k, layer[k], errors) for k in sorted(layer) if k.startswith("win_length_") and k in ALIASES]
    for name in [k for k in layer if k in ALIASES]:
        alias = ALIASES[name]
        clash = [t for t in alias.targets if t in layer]
        if clash:
            errors.append(f"{name} and {clash[0]}: give one, not both ({name} is the report's form of {clash[0]})")
        elif alias.convert is not None and (value := coerce(name, layer[name], errors)) is not None:
            out.update(alias.convert(value))
    if stacked and "stacked_win_lengths" not in layer and None not in stacked:
        out["stacked_win_lengths"] = stacked
    return out




def keys_with_role(*roles: str) -> list[str]:
    """Config keys (in Config order) whose role is one of ``roles``."""
    return [k for k, f in FIELDS.items() if f.metadata["role"] in roles]


def effective(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a config as a dict, possibly from an older record) with every knob that has no effect set to
    what the run does instead: ``pretrained`` false for architectures without pretrained weights,
    ``freeze_epochs`` 0 without pretrained weights, no single window when ``stacked_win_lengths`` replaces it.
    Two configurations that compute the same thing then look the same to records, sweeps and analysis. Keys
    missing from ``values`` (a record written before they existed) take their defaults: what runs did then."""
    out = {k: _default(f) for k, f in FIELDS.items() if k not in values} | dict(values)
    if out.get("esc10") and out.get("dataset") == "esc50":  # two spellings of one dataset: records hold the name
        out["dataset"], out["esc10"] = "esc10", False
    if out.get("fold") is None:  # the fold the run validates on
        out["fold"] = valid_fold(None, out.get("test_fold") if out.get("split") == "official" else None,
                                 out.get("dataset"))
    if out.get("clip_seconds") is None and (entry := _dataset(out.get("dataset"))) is not None:
        out["clip_seconds"] = float(entry.default_seconds)
    arch = out.get("arch")
    if out.get("pretrained") and isinstance(arch, str) and (entry := _arch(arch)) and not entry.pretrainable:
        out["pretrained"] = False
    if out.get("finetune") == "none":
        out["pretrained"] = False
    if out.get("pretrained") is False and "finetune" in out:
        out["finetune"] = "none"
    if (out.get("pretrained") is False or out.get("finetune") == "head" or out.get("unfreeze_schedule")) and \
            "freeze_epochs" in out:
        out["freeze_epochs"] = 0
    if out.get("unfreeze_schedule") and "discriminative_lr" in out:  # one fit at one rate: nothing to discriminate
        out["discriminative_lr"] = True
    if out.get("frontend") == "kaldi" and "n_fft" in out:
        out["n_fft"] = kaldi_fft_size(out)
    if "augmented_view" in out and "augmented" not in (out.get("view_channels") or []):
        out["augmented_view"] = "per_batch"
    if "tta_views" in out and isinstance(out.get("tta"), int) and out["tta"] <= 1:  # TTA off
        out["tta_views"] = "plain+augmented"
    if out.get("stacked_win_lengths") or out.get("stacked_win_lengths_ms"):
        out.update({k: None for k in ("win_length", "win_length_ms") if k in out})
    if out.get("stacked_hop_lengths") or out.get("stacked_hop_lengths_ms"):
        out.update({k: None for k in ("hop_length", "hop_length_ms") if k in out})
    if out.get("f_max") is None and isinstance(out.get("sample_rate"), (int, float)) and "f_max" in out:
        out["f_max"] = min(DEFAULT_F_MAX, out["sample_rate"] / 2)
    if out.get("stretch_min_rate") is not None and out.get("stretch_max_rate") is not None and "stretch_max" in out:
        out["stretch_max"] = _default(FIELDS["stretch_max"])  # both rates given: stretch_max says nothing
    for key, f, gates, when in _conditional_keys():
        # a range of an augmentation that is off has no effect: its default stands
        if gates and key in out and all(g in out for g in gates) and not any(out[g] for g in gates):
            out[key] = _default(f)
        # nor does a schedule's parameter under another schedule, nor a logmel knob under the kaldi front end
        if key in out and any(k in out and out[k] != v for k, v in when):
            out[key] = _default(f)
    # nor a model's own knob (one a registry entry lists) under an architecture whose entry does not list it; the
    # entry is looked up only for a knob off its default (timm/<name> imports timm)
    idle = {k for k in _model_knobs() if k in out and out[k] != _default(FIELDS[k])}
    if idle and isinstance(arch, str):
        out.update({k: _default(FIELDS[k]) for k in idle - set(_knobs(arch))})
    return out


@functools.cache
def _conditional_keys() -> list[tuple[str, dataclasses.Field, tuple[str, ...], tuple[tuple[str, Any], ...]]]:
    """The keys that act only with others (``needs=``, ``when=``), in Config order, with their gates and
    conditions: read once, not for every configuration :func:`effective` sees."""
    rules = [(k, f, gate_keys(k), tuple((f.metadata.get("when") or {}).items())) for k, f in FIELDS.items()]
    return [rule for rule in rules if rule[2] or rule[3]]


def gate_keys(key: str) -> tuple[str, ...]:
    """The keys that switch on the augmentation ``key`` belongs to (its ``needs``): ``key`` acts while any is on."""
    needs = FIELDS[key].metadata.get("needs")
    return (needs,) if isinstance(needs, str) else tuple(needs or ())


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _arch(name: str):
    from .models import arch_entry  # the registry says which architectures exist

    return arch_entry(name)


def _arch_names(patterns: bool = False) -> list[str]:
    from .models import arch_names

    return arch_names(patterns)


def _knobs(arch: str) -> tuple[str, ...]:
    """The config keys architecture ``arch`` takes for itself (none when it is unknown)."""
    entry = _arch(arch)
    return entry.knobs if entry is not None else ()


def _model_knobs() -> set[str]:
    """The config keys some architecture takes for itself: they have no effect under the others."""
    return {k for name in _arch_names() for k in _knobs(name)}


def _dataset(name: Any):
    from .datasets import dataset_entry  # the registry says which datasets exist

    return dataset_entry(name) if isinstance(name, str) else None


def _preset(name: Any) -> dict[str, Any]:
    """The config values architecture ``name`` brings for the keys a user leaves out (its front end)."""
    entry = _arch(name) if isinstance(name, str) else None
    return dict(entry.preset) if entry is not None else {}


def kaldi_fft_size(values: dict[str, Any]) -> int:
    """The FFT size of the kaldi front end: its window padded to the next power of two (Kaldi's
    ``round_to_power_of_two``), whatever ``n_fft`` says."""
    window = _samples(values.get("win_length"), values.get("win_length_ms"), values.get("sample_rate"))
    return 1 << max(0, window - 1).bit_length()


def _samples(samples: int | None, ms: float | None, sample_rate: int) -> int:
    # Python's round (half to even: 25 ms at 44.1 kHz = 1102.5 -> 1102) is the Palanisamy et al. code's.
    return int(samples) if samples is not None else int(round(ms * sample_rate / 1000))


def _stacked(samples: list[int] | None, ms: list[float] | None, sample_rate: int) -> list[int]:
    """A stacked list in samples, from its samples form or its ms form."""
    return list(samples) if samples else [_samples(None, m, sample_rate) for m in ms]


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return "|".join(map(str, args))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _type_name(inner[0]) + "?"
    if typing.get_origin(tp) is list:
        return f"list[{_type_name(args[0])}]"
    return tp.__name__


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def coerce(key: str, value: Any, errors: list[str] | None = None) -> Any:
    """Convert ``value`` (from YAML, the CLI or W&B) to the type of ``key`` (a config key or an alias); raise a
    ConfigError if impossible, or with ``errors``, append its message there and return None."""
    try:
        frozen = _frozen(value) if not isinstance(value, list) or _takes_list(key) else None
        if frozen is None and value is not None:  # a dict, or a list for a key of another type: no cache
            return _coerce(key, value)
        try:  # each distinct value converted once; a list as a tuple, which list keys take alike
            out = _coerce_scalar(key, frozen)
        except ConfigError:
            if frozen is value:
                raise
            return _coerce(key, value)  # the message shows the list as given
        return copy.deepcopy(out) if isinstance(out, list) else out  # a list ("[64, 64]") is the caller's own
    except ConfigError as e:
        if errors is None:
            raise
        errors.append(str(e))
        return None


def _frozen(value: Any) -> Any:
    """``value`` as a hashable key of the same meaning (lists of scalars as tuples), None when it has none."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        items = tuple(_frozen(v) for v in value)
        return None if any(f is None and v is not None for f, v in zip(items, value)) else items
    return None


@functools.cache
def _takes_list(key: str) -> bool:
    tp = key_type(key)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) is list


@functools.lru_cache(maxsize=65536, typed=True)  # typed: 1, 1.0 and True are different values here
def _coerce_scalar(key: str, value: Any) -> Any:
    return _coerce(key, value)


def _coerce(key: str, value: Any) -> Any:
    tp = key_type(key)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = yaml.safe_load(text) if text else text
        except yaml.YAMLError:  # e.g. "!x" (a tag): no YAML value, so the text itself, which _coerce_to judges
            value = text
        if (typing.get_origin(tp) is Literal or tp is str) and not (isinstance(value, bool) and
                                                                     key in BOOLEAN_VALUES):
            value = text if value is not None or text.lower() not in ("null", "none", "~") else None
    if isinstance(value, bool) and key in BOOLEAN_VALUES:
        value = BOOLEAN_VALUES[key][value]
    return _coerce_to(key, tp, value)


def _coerce_to(key: str, tp: Any, value: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "")):
            return None
        return _coerce_to(key, next(a for a in args if a is not type(None)), value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce_to(key, args[0], v) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                int(value) != value:
            raise bad
        return int(value)
    if tp is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads exponents without a dot (1e-05, str(0.00001)) as strings
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad
        return str(value)
    raise bad


# Names that fastai, PyTorch, timm or W&B habits give our keys, and that spelling cannot suggest: a "did you mean"
# hint only, never an alias (records and W&B configs keep one name per key).
HABITS = {"lr": "learning_rate", "lr_max": "learning_rate", "bs": "batch_size", "wd": "weight_decay",
          "epochs": "n_epochs", "seed": "trial_num", "opt": "optimizer", "opt_func": "optimizer", "model": "arch",
          "sr": "sample_rate", "fp16": "precision", "amp": "precision", "ls": "label_smoothing", "gpu": "device"}


def unknown_key_message(key: str) -> str:
    name = key.replace("-", "_")  # --n-epoch: n_epochs
    close = [HABITS[name]] if name in HABITS else difflib.get_close_matches(name, [*FIELDS, *ALIASES], n=1)
    hint = f"; did you mean {close[0]}?" if close else "; see `python train.py --help`"
    return f"unknown config key {key!r}{hint}"


def merge(layers: list[dict[str, Any]]) -> Config:
    """Build a validated Config from layers of explicit values, later layers winning."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    layers = [resolve_aliases(layer, errors) for layer in layers]
    arch = next((layer["arch"] for layer in reversed(layers) if "arch" in layer), _default(FIELDS["arch"]))
    for layer in [_preset(arch), *layers]:  # the architecture's front end, under everything the user gave
        for key in [k for k in layer if k in ALTERNATIVE_FORMS and ALTERNATIVE_FORMS[k] in layer]:
            if layer[key] is not None and layer[ALTERNATIVE_FORMS[key]] is not None and key < ALTERNATIVE_FORMS[key]:
                errors.append(f"{key} and {ALTERNATIVE_FORMS[key]}: give one form, not both")
        for key, value in layer.items():
            if key not in FIELDS:
                errors.append(unknown_key_message(key))
                continue
            try:
                values[key] = coerce(key, value)
            except ConfigError as e:
                errors.append(str(e))
                continue
            other = ALTERNATIVE_FORMS.get(key)
            if other and values[key] is not None and layer.get(other) is None:
                values[other] = None
    if errors:
        raise ConfigError(_format(errors))
    cfg = Config(**values)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Reject impossible values, naming the keys and the allowed range (each key's ``bounds``, then the rules
    that relate keys)."""
    e: list[str] = []
    for key, f in FIELDS.items():
        value, bounds = getattr(cfg, key), f.metadata["bounds"]
        if bounds is not None and value is not None:
            e += [f"{key}: must be {bounds.describe()}, got {v}" for v in _numbers(value) if v not in bounds]
    for samples, ms in (("hop_length", "hop_length_ms"), ("win_length", "win_length_ms")):
        if getattr(cfg, samples) is None and getattr(cfg, ms) is None and not (
                cfg.stacked_win_lengths or cfg.stacked_win_lengths_ms if samples == "win_length" else cfg.stacked_hops):
            e.append(f"{samples} / {ms}: give one of them")
    e += _stacked_errors(cfg)
    if not e:
        if not cfg.stacked_hops and cfg.hop_samples < 1:
            e.append(f"hop_length_ms: {cfg.hop_length_ms} ms is less than one sample at {cfg.sample_rate} Hz")
        win_key = "stacked_win_lengths" if cfg.stacked_win_lengths else "stacked_win_lengths_ms" if \
            cfg.stacked_win_lengths_ms else "win_length" if cfg.win_length is not None else "win_length_ms"
        for w in cfg.win_lengths:
            if not 1 <= w <= cfg.fft_size:
                e.append(f"{win_key} and n_fft: window length {w} must be in 1..n_fft={cfg.n_fft} samples")
        if cfg.n_mels > cfg.fft_size // 2 + 1:
            e.append(f"n_mels and n_fft: n_mels={cfg.n_mels} exceeds the {cfg.fft_size // 2 + 1} FFT bins"
                     + (" of the kaldi front end's window" if cfg.frontend == "kaldi" else ""))
        if cfg.mel_f_max > cfg.sample_rate / 2:
            e.append(f"f_max and sample_rate: f_max={cfg.mel_f_max:g} must be <= sample_rate/2 = "
                     f"{cfg.sample_rate / 2:g} (leave f_max out for min({DEFAULT_F_MAX:g}, sample_rate/2))")
        if cfg.f_min >= cfg.mel_f_max:
            e.append(f"f_min and f_max: need f_min < f_max, got f_min={cfg.f_min:g}, f_max={cfg.mel_f_max:g}")
        if cfg.noise_snr_min > cfg.noise_snr_max:
            e.append(f"noise_snr_min and noise_snr_max: {cfg.noise_snr_min:g} > {cfg.noise_snr_max:g}")
        if cfg.noise_sigma_max is not None and cfg.noise_p > 0 and cfg.noise_color != "white":
            e.append(f"noise_sigma_max and noise_color: the absolute form adds white Gaussian noise, not "
                     f"{cfg.noise_color}: set noise_color white, or noise_sigma_max null for the SNR form")
    entry = _arch(cfg.arch)
    if entry is None:
        e.append(f"arch: unknown architecture {cfg.arch!r}; known: {', '.join(_arch_names(patterns=True))} "
                 "(timm/<name>: any model timm.list_models() lists; ast/<hub repo>: an AST checkpoint such as "
                 "ast/MIT/ast-finetuned-speech-commands-v2)")
    elif cfg.pretrained_path and not entry.local_weights:
        e.append("pretrained_path: only for timm models, ast and cnn_gpt2; for torchvision models put the .pth file "
                 "named in the error into ~/.cache/torch/hub/checkpoints")
    if cfg.frontend == "kaldi":
        if cfg.stacked_win_lengths or cfg.stacked_win_lengths_ms:
            e.append("stacked_win_lengths: the kaldi front end takes one window (win_length); use frontend logmel")
        e += [f"{key}: pitch shift and time stretch warp the logmel front end's power spectrogram; the kaldi front "
              f"end has none: use frontend logmel, warp_domain waveform, or {key} 0" for key in ("pitch_p", "stretch_p")
              if getattr(cfg, key) > 0 and cfg.warp_domain == "spectrogram"]
    elif cfg.normalize == "audioset":
        e.append("normalize=audioset: AST's AudioSet statistics are of kaldi fbanks; use frontend kaldi, or "
                 "normalize global")
    if entry is not None:
        e += entry.check(cfg)  # the architecture's own rules
    e += _dataset_errors(cfg) + _recipe_errors(cfg)
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        e.append(f"device: must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    if cfg.normalize == "imagenet" and cfg.n_channels not in (1, 3):
        e.append(f"normalize=imagenet needs 1 or 3 channels, stacked_win_lengths and view_channels give "
                 f"{cfg.n_channels}")
    if e:
        raise ConfigError(_format(e))


def _stacked_errors(cfg: Config) -> list[str]:
    """Stacked windows and hops (either form) that are empty or do not pair up, channels of different frame counts
    without ``resize_to``, and ``resize_to`` where it cannot apply."""
    e = [f"{key}: give at least one {'hop' if 'hop' in key else 'window'} length, or null"
         for key in ("stacked_win_lengths", "stacked_win_lengths_ms", "stacked_hop_lengths", "stacked_hop_lengths_ms")
         if getattr(cfg, key) is not None and len(getattr(cfg, key)) == 0]
    if e:
        return e
    hop_key = "stacked_hop_lengths" if cfg.stacked_hop_lengths else "stacked_hop_lengths_ms"
    if cfg.stacked_hops:
        windows = cfg.stacked_win_lengths or cfg.stacked_win_lengths_ms
        hops = getattr(cfg, hop_key)
        if not windows:
            e.append(f"{hop_key}: one hop per stacked window: give stacked_win_lengths (or its _ms form) too, or "
                     "use hop_length for a single window")
        elif len(hops) != len(windows):
            e.append(f"{hop_key}: one hop per stacked window: got {len(hops)} hops for {len(windows)} windows")
        elif min(cfg.hop_lengths) < 1:
            e.append(f"{hop_key}: {hops} ms has a hop of less than one sample at {cfg.sample_rate} Hz")
        elif len(set(cfg.hop_lengths)) > 1 and not cfg.resize_to:
            e.append(f"{hop_key}: channels of different hops ({cfg.hop_lengths} samples) have different frame "
                     "counts: add resize_to [n_mels, frames] to resize every channel to one shape (e.g. [128, 250] "
                     "as Palanisamy et al.); max_frames does not apply: it would crop channels to different spans")
    if cfg.resize_to is not None:
        if len(cfg.resize_to) != 2:
            e.append(f"resize_to: give [n_mels, frames], got {cfg.resize_to}")
        if cfg.frontend == "kaldi":
            e.append("resize_to: the kaldi front end is not resized; use frontend logmel, or leave resize_to out")
        if cfg.max_frames:
            e.append("resize_to and max_frames: resize_to sets the frames; give one of them")
    return e


def _recipe_errors(cfg: Config) -> list[str]:
    """The training and input recipe keys that contradict each other or the architecture."""
    e, schedule = [], cfg.unfreeze_schedule
    if schedule is not None:
        epochs = [pair[0] for pair in schedule if len(pair) == 2]
        if not schedule or len(epochs) < len(schedule) or any(pair[1] < 1 for pair in schedule):
            e.append(f"unfreeze_schedule: give [[epoch, blocks], ...] pairs with blocks >= 1, got {schedule}")
        elif epochs[0] != 0 or epochs != sorted(set(epochs)):
            e.append(f"unfreeze_schedule: epochs must start at 0 and increase, got {epochs}")
        entry = _arch(cfg.arch)
        if entry is not None and not entry.blocks:
            e.append(f"unfreeze_schedule: {cfg.arch} does not expose its blocks to the unfreezing schedule; use an "
                     "architecture that does (cnn_gpt2, the torchvision models), or leave it out for fastai's "
                     "fine_tune")
        if cfg.finetune == "head":
            e.append("unfreeze_schedule and finetune=head: the body never trains with finetune head; use finetune "
                     "full with a schedule")
    if cfg.pitch_integer and not float(cfg.pitch_semitones).is_integer():
        e.append(f"pitch_integer: whole-semitone draws need a whole pitch_semitones, got {cfg.pitch_semitones:g}")
    if (rates := cfg.stretch_rates)[0] > rates[1]:
        e.append(f"stretch_min_rate and stretch_max_rate: the lowest rate {rates[0]:g} exceeds the highest "
                 f"{rates[1]:g} (a null one is 1 -+ stretch_max)")
    if cfg.keep_clean_copy and not any(getattr(cfg, k) for k in AUGMENTATIONS):
        e.append(f"keep_clean_copy: a clean copy goes beside an augmented one; switch on an augmentation "
                 f"({', '.join(AUGMENTATIONS)}) or leave keep_clean_copy false")
    if cfg.keep_clean_copy and cfg.view_channels != ["original"]:
        e.append("keep_clean_copy and view_channels: a clean copy is of a clip with one view; use view_channels "
                 "[original], or keep_clean_copy false")
    if cfg.schedule == "step" and (cfg.step_size is None) == (cfg.step_milestones is None):
        e.append("step_size and step_milestones: schedule step needs exactly one of them (every step_size epochs, or "
                 f"at the epochs of step_milestones), got step_size {cfg.step_size} and step_milestones "
                 f"{cfg.step_milestones}")
    milestones = cfg.step_milestones
    if milestones is not None and (not milestones or any(a >= b for a, b in zip(milestones, milestones[1:]))):
        e.append(f"step_milestones: give increasing epochs, e.g. [300, 350], got {milestones}")
    if not cfg.view_channels:
        e.append("view_channels: give at least one view, e.g. [original]")
    elif cfg.view_channels.count("original") > 1:
        e.append(f"view_channels: the original view once (a copy adds nothing), got {cfg.view_channels}")
    elif "augmented" in cfg.view_channels and not any(getattr(cfg, k) for k in AUGMENTATIONS):
        e.append(f"view_channels: an augmented view needs an augmentation ({', '.join(AUGMENTATIONS)})")
    return e


def _numbers(value: Any) -> list:
    """The numbers in a value, a list or a list of lists."""
    return [n for v in value for n in _numbers(v)] if isinstance(value, list) else [value]


ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")  # a download_url naming one archive


def _dataset_errors(cfg: Config) -> list[str]:
    """The dataset keys that contradict the dataset: folds it lacks, metadata it does not read."""
    e, entry = [], _dataset(cfg.dataset_name)
    if cfg.esc10 and cfg.dataset not in ("esc50", "esc10"):
        e.append(f"esc10: the ESC-10 subset is of esc50, not of dataset {cfg.dataset}")
    for key in ("fold", "test_fold"):
        if entry.n_folds is not None and getattr(cfg, key) is not None and not 1 <= getattr(cfg, key) <= entry.n_folds:
            e.append(f"{key}: dataset {entry.name} has folds 1..{entry.n_folds}, got {getattr(cfg, key)}")
    e += _test_errors(cfg, entry)
    if cfg.split == "official" and entry.n_folds is None and not entry.folds_in_metadata:
        e.append(f"split: dataset {entry.name} has no official folds; use --split stratified")
    if cfg.data_dir is None and entry.default_dir is None and cfg.dataset != "csv":
        e.append(f"data_dir: dataset {entry.name} is your own clips: give --data_dir (the folder that holds them)")
    if cfg.dataset == "csv" and not cfg.metadata:
        e.append("metadata: dataset csv needs --metadata FILE.csv (columns file, label, optionally fold, group)")
    if entry.download_urls and cfg.download_url and urlsplit(cfg.download_url).path.endswith(ARCHIVE_SUFFIXES):
        e.append(f"download_url: dataset {entry.name} is {len(entry.download_urls)} archives; give the folder URL "
                 f"that holds them all (as the official {entry.download_urls[0].rsplit('/', 1)[0]}/), not one archive")
    if cfg.metadata and cfg.dataset != "csv":
        e.append(f"metadata: only read by dataset csv, not {cfg.dataset}; leave it out or use --dataset csv")
    return e


def _test_errors(cfg: Config, entry) -> list[str]:
    """The held-out test keys that contradict the split or the validation fold."""
    e = []
    if cfg.test_fold is not None:
        if cfg.split != "official":
            e.append("test_fold: holds out an official fold; with split stratified use test_pct")
        elif cfg.fold == cfg.test_fold:
            e.append(f"test_fold and fold: both {cfg.fold}; the test fold must not validate: give another fold, or "
                     "leave fold out for the fold after test_fold")
        elif cfg.fold is None and entry.n_folds is None:
            e.append(f"fold: dataset {entry.name}'s folds come from its metadata: give the validation fold with "
                     "test_fold")
    if cfg.test_pct > 0 and cfg.split != "stratified":
        e.append("test_pct: holds out a share of a stratified split; with split official use test_fold")
    return e


def valid_fold(fold: int | None, test_fold: int | None, dataset: Any) -> int:
    """The validation fold: ``fold``, else the fold after ``test_fold`` (after the last, the first), else 1."""
    if fold is not None:
        return fold
    entry = _dataset(dataset)
    if test_fold is None or entry is None or entry.n_folds is None:
        return 1
    return test_fold % entry.n_folds + 1


def _format(errors: list[str]) -> str:
    return "invalid configuration:\n  " + "\n  ".join(errors)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config file: a flat mapping of keys, or a W&B-style ``{key: {value: ...}}`` mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: no such file {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"--config {path}: not a readable YAML file ({' '.join(str(e).split())})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return {k: (v["value"] if isinstance(v, dict) and set(v) == {"value"} else v) for k, v in data.items()}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="train.py", allow_abbrev=False, argument_default=argparse.SUPPRESS,
        description="Train one audio classifier on ESC-50 and write a result record. "
                    "Values: defaults <- --config FILE <- --key value <- wandb.config (sweeps).",
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=30, width=110))
    p.add_argument("--config", metavar="FILE.yaml", action="append",
                   help="YAML file of config keys; given more than once, a later file's keys win")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, f in FIELDS.items():
        group = groups.setdefault(f.metadata["group"], p.add_argument_group(f.metadata["group"]))
        default = _default(f)
        choices = f"; one of: {', '.join(f.metadata['choices']())}" if "choices" in f.metadata else ""
        kind = _type_name(TYPES[name])
        flag = {"nargs": "?", "const": "true"} if TYPES[name] is bool else {}  # `--esc10` alone means true
        bounds = f"; {f.metadata['bounds'].describe()}" if f.metadata["bounds"] else ""
        group.add_argument(f"--{name}", metavar="{" + kind + "}" if "|" in kind else kind.upper(), **flag,
                           help=f"{f.metadata['help']}{choices} (default: {default}{bounds})")
    report = p.add_argument_group("the report's keys (its sweep files run unchanged; records hold our keys)")
    for name, alias in ALIASES.items():
        flag = {"nargs": "?", "const": "true"} if alias.type is bool else {}
        report.add_argument(f"--{name}", metavar=_type_name(alias.type).upper(), help=alias.help, **flag)
    return p


def parse_known(argv: list[str] | None, parser: argparse.ArgumentParser) -> tuple[Config, dict[str, Any],
                                                                          dict[str, Any]]:
    """Parse the command line with ``parser`` (:func:`build_parser`, perhaps with options of its own added).

    Returns the validated Config, the explicit config layers (``--config FILE`` then the command line: the keys
    the user set) and the values of the parser's other options. Unknown options are a ConfigError.
    """
    ns, rest = parser.parse_known_args(argv)
    errors = []
    for i, arg in enumerate(rest):
        if arg.startswith("--"):
            errors.append(unknown_key_message(arg[2:].split("=", 1)[0]))
        elif i == 0 or not rest[i - 1].startswith("--") or "=" in rest[i - 1]:  # not an unknown key's value
            errors.append(f"unexpected argument {arg!r}: options are --key value or --key=value")
    if errors:
        raise ConfigError(_format(errors))
    given = vars(ns)
    explicit = {k: given.pop(k) for k in list(given) if k in FIELDS or k in ALIASES}
    extras = {k: v for k, v in given.items() if k != "config"}
    layers = [*(load_yaml(path) for path in given.get("config", [])), explicit]
    return merge(layers), {k: v for layer in layers for k, v in layer.items()}, extras


def parse_args(argv: list[str] | None = None) -> tuple[Config, dict[str, Any]]:
    """Parse train.py's command line; return the validated Config and the keys the user set."""
    cfg, explicit, _ = parse_known(argv, build_parser())
    return cfg, explicit


def overlay(cfg: Config, layer: dict[str, Any]) -> Config:
    """Apply a later layer (e.g. ``wandb.config`` set by a sweep) over an existing Config."""
    base = {k: v for k, v in cfg.to_dict().items() if not (k in ALTERNATIVE_FORMS and k in layer)}
    for k in [k for k in layer if k in ALTERNATIVE_FORMS]:
        base.pop(ALTERNATIVE_FORMS[k], None)
    return merge([base, layer])
