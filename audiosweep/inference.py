"""A saved model (``save_model``) applied to new clips: rebuilt from the file beside its record, on any device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

from .augment import fixed_views
from .config import FIELDS, Config, merge
from .data import ClipSpec, clip_samples, conform
from .datasets import dataset_entry
from .errors import ConfigError, UserError
from .features import apply_normalization, compute_features, input_shape
from .models import build_model
from .results import Record, RunFiles, record_files

# A clip this much longer or shorter than the model's clip length is still "the same length" (rounding of its
# sample count).
LENGTH_TOLERANCE_S = 0.01


class PredictError(UserError):
    """No usable model, or a clip that cannot be classified; the message names it."""


@dataclass
class Predictor:
    cfg: Config
    classes: list[str]
    model: torch.nn.Module
    norm_stats: dict
    device: torch.device

    def clip(self, path: str | Path) -> torch.Tensor:
        """A clip as the dataset loader gives it: mono, resampled to the model's rate, of its clip length. A model
        trained on a variable dataset takes any clip, downmixed, cropped or padded as its training clips were; one
        trained on ESC-50 takes 5 s mono clips."""
        try:
            wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types for unreadable files
            raise PredictError(f"{path}: cannot read the clip ({e})") from e
        entry = dataset_entry(self.cfg.dataset_name)
        if entry is not None and not entry.strict:
            wav = conform(wav, rate, ClipSpec.of(entry, self.cfg), Path(path))[:, None]
        if wav.shape[1] != 1:
            raise PredictError(f"{path}: {wav.shape[1]} channels; the model takes mono clips (downmix it first)")
        seconds = len(wav) / rate
        if abs(seconds - self.cfg.clip_length) > LENGTH_TOLERANCE_S:
            raise PredictError(f"{path}: {seconds:.2f} s long; the model was trained on {self.cfg.clip_length:g} s "
                               "clips (crop or pad it to that length)")
        x = torch.from_numpy(wav[:, 0])
        if rate != self.cfg.sample_rate:
            x = torchaudio.functional.resample(x, rate, self.cfg.sample_rate)
        n = clip_samples(self.cfg)
        return torch.nn.functional.pad(x[:n], (0, max(0, n - len(x))))  # rounding of the sample count only

    @torch.no_grad()
    def probabilities(self, paths: list[str | Path]) -> torch.Tensor:
        """(len(paths), n_classes) class probabilities."""
        wavs = torch.stack([self.clip(p) for p in paths])
        return self.model(self.features(wavs)).float().softmax(dim=1).cpu()

    @torch.no_grad()
    def features(self, wavs: torch.Tensor) -> torch.Tensor:
        """The model's input for clips ``wavs`` (N, samples), made as the run made its validation inputs: the
        normalised log-mels, of ``max_frames`` frames when set, and their views (``view_channels``), the augmented
        ones drawn once from the run's seed."""
        feats = apply_normalization(compute_features(wavs, self.cfg, self.device), self.cfg.normalize,
                                    self.norm_stats)
        return fixed_views(feats, wavs, self.cfg, self.device, self.norm_stats)

    def top_k(self, paths: list[str | Path], k: int = 5) -> list[list[tuple[str, float]]]:
        probs = self.probabilities(paths)
        values, idx = probs.topk(min(k, probs.shape[1]), dim=1)
        return [[(self.classes[i], float(v)) for v, i in zip(vs, ix, strict=True)] for vs, ix in zip(values, idx,
                                                                                                      strict=True)]


def model_file(source: str | Path) -> Path:
    """The model file of a record (``RUN.json``), of a model file itself, or the best run with a model in a folder."""
    source = Path(source)
    if source.is_dir():
        candidates = []
        for path in record_files(source):
            try:
                rec = Record.load(path)
            except ValueError:
                continue
            if RunFiles(path).model.is_file() and rec.status == "finished":
                candidates.append(((rec.summary.accuracy or 0.0), path))
        if not candidates:
            raise PredictError(f"{source}: no finished run with a saved model in it (train with --save_model final)")
        return RunFiles(max(candidates)[1]).model
    if source.name.endswith(".model.pt"):
        return source
    if not source.is_file():
        raise PredictError(f"{source}: no such record or folder")
    model = RunFiles(source).model
    if not model.is_file():
        raise PredictError(f"{source}: this run saved no model ({model.name} is missing); train it with "
                           "--save_model final or best")
    return model


def load_predictor(source: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """The model saved beside a record (or the best one in a folder), rebuilt on ``device`` (a model trained
    on a GPU loads on a CPU)."""
    path = model_file(source)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        cfg = merge([{k: v for k, v in saved["config"].items() if k in FIELDS}])
    except (OSError, RuntimeError, KeyError, ConfigError) as e:
        raise PredictError(f"{path}: not a model saved by train.py ({e})") from e
    device = torch.device(device)
    # the input shape it was trained on (AST's position embeddings are sized to it)
    arch = build_model(cfg, len(saved["classes"]), input_shape(cfg), pretrained=False)
    arch.model.load_state_dict(saved["state_dict"])
    return Predictor(cfg, list(saved["classes"]), arch.model.to(device).eval(),
                     saved["norm_stats"], device)
