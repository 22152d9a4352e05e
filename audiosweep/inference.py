"""A saved model (``save_model``) applied to new clips: rebuilt from the file beside its record, on any device."""

from __future__ import annotations

import math
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .augment import fixed_views
from .config import FIELDS, Config, merge
from .data import ClipSpec, clip_samples, conform
from .device import usable_device
from .errors import ConfigError, UserError
from .features import apply_normalization, compute_features, input_shape
from .models import build_model
from .results import Record, RunFiles, is_regular, record_files

# A clip this much longer or shorter than the model's clip length is still "the same length" (rounding of its
# sample count).
LENGTH_TOLERANCE_S = 0.01


NONFINITE_HINT = "are its samples within -1 to 1?"


class PredictError(UserError):
    """No usable model, or a clip that cannot be classified; the message names it."""


class ClipError(PredictError):
    """One clip that cannot be classified: its ``path`` and the ``problem``, which the message joins."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


@dataclass
class Prediction:
    """One clip's outcome: its ``top`` classes with their probabilities, most probable first, and how reading it
    changed it (``changes``, :meth:`Predictor.read`); or the ``error`` that kept it from being classified."""

    clip: Path
    top: list[tuple[str, float]] | None = None
    error: str | None = None
    changes: list[str] = field(default_factory=list)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 samples and the sample rate of the file ``path``; a ClipError saying what is
    wrong: no such file, not a regular file, the OS's reason it cannot be opened, the decoder's reason."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:  # a broken link too
        raise ClipError(path, "no such file") from None
    except OSError as e:
        raise ClipError(path, f"cannot read the clip ({e.strerror or e})") from e
    if stat.S_ISDIR(mode):
        raise ClipError(path, "a folder, not a clip")
    if not stat.S_ISREG(mode):  # reading a FIFO would wait for a writer
        raise ClipError(path, "not a regular file (a pipe, socket or device)")
    # Opened here, not by soundfile: given a path, libsndfile reports every error of the OS (missing, permission
    # denied) as "System error"; given an open file, only what is wrong with the audio.
    try:
        f = open(path, "rb")  # closed by the with below
    except OSError as e:
        raise ClipError(path, f"cannot open the clip ({e.strerror or e})") from e
    with f:
        try:
            return sf.read(f, dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types for unreadable files
            reason = (getattr(e, "error_string", None) or str(e)).rstrip(".")
            raise ClipError(path, f"cannot read the clip as audio ({reason})") from e


def top_classes(probs: torch.Tensor, classes: list[str], k: int) -> tuple[list[tuple[str, float]] | None,
                                                                           str | None]:
    """The ``k`` most probable of ``classes`` under ``probs`` (n_classes,), or None and why there are none."""
    if not probs.isfinite().all():
        return None, f"the model gives no finite probabilities for this clip ({NONFINITE_HINT})"
    values, idx = probs.topk(min(k, len(classes)))
    return [(classes[i], float(v)) for v, i in zip(values, idx, strict=True)], None


@dataclass
class Predictor:
    cfg: Config
    classes: list[str]
    model: torch.nn.Module
    norm_stats: dict
    device: torch.device

    def clip(self, path: str | Path) -> torch.Tensor:
        """A clip as the model's training clips were made (:meth:`read`)."""
        return self.read(path)[0]

    def read(self, path: str | Path) -> tuple[torch.Tensor, list[str]]:
        """A clip as the model's training clips were made: mono (channels averaged), cropped to its first
        ``clip_length`` seconds or padded to them (``pad_mode``), resampled to the model's rate; and what was
        changed (``downmixed``, ``padded``, ``cropped``). A ClipError when it cannot be read, has no samples, or
        has samples that are no finite numbers.

        One rule for every dataset: :func:`audiosweep.data.conform`'s, which made the training and validation
        clips of every dataset whose clips vary (UrbanSound8K, GTZAN, folders...); ESC-50's are all 5 s mono, so
        its training knows no other rule. A long clip is cropped, not averaged over windows: the probabilities
        are then those of clips like the ones the run validated, while a mean over windows was never validated."""
        wav, rate = read_audio(Path(path))
        if wav.size == 0:
            raise ClipError(path, f"the clip has no samples; give a clip of {self.cfg.clip_length:g} s")
        bad = int(wav.size - np.isfinite(wav).sum())
        if bad:
            raise ClipError(path, f"{bad} of the clip's {wav.size} samples are not finite numbers (NaN or infinity); "
                                  "repair or re-export the clip")
        seconds = len(wav) / rate
        changes = ["downmixed"] * (wav.shape[1] > 1)
        changes += ["padded"] * (seconds < self.cfg.clip_length - LENGTH_TOLERANCE_S)
        changes += ["cropped"] * (seconds > self.cfg.clip_length + LENGTH_TOLERANCE_S)
        spec = ClipSpec(self.cfg.dataset_name, strict=False, seconds=self.cfg.clip_length, pad_mode=self.cfg.pad_mode)
        x = torch.from_numpy(conform(wav, rate, spec, Path(path)))
        if rate != self.cfg.sample_rate:
            x = torchaudio.functional.resample(x, rate, self.cfg.sample_rate)
        n = clip_samples(self.cfg)
        return torch.nn.functional.pad(x[:n], (0, max(0, n - len(x)))), changes  # rounding of the count only

    def predict(self, paths: list[str | Path], k: int = 5, batch: int = 64) -> Iterator[Prediction]:
        """Each clip's ``k`` most probable classes, in the order of ``paths``, ``batch`` clips at a time (a
        caller can print them as they come); a clip that cannot be classified is a Prediction with its error, and
        the others go on."""
        for start in range(0, len(paths), batch):
            done, wavs = [], []
            for path in paths[start:start + batch]:
                try:
                    wav, changes = self.read(path)
                except ClipError as e:
                    done.append(Prediction(Path(path), error=e.problem))
                    continue
                done.append(Prediction(Path(path), changes=changes))
                wavs.append(wav)
            probs = iter(self.model_probabilities(torch.stack(wavs)) if wavs else [])
            for p in done:
                if p.error is None:
                    p.top, p.error = top_classes(next(probs), self.classes, k)
                yield p

    @torch.no_grad()
    def model_probabilities(self, wavs: torch.Tensor) -> torch.Tensor:
        """(N, n_classes) class probabilities of the clips ``wavs`` (N, samples), on the CPU."""
        return self.model(self.features(wavs)).float().softmax(dim=1).cpu()

    @torch.no_grad()
    def probabilities(self, paths: list[str | Path]) -> torch.Tensor:
        """(len(paths), n_classes) class probabilities; a PredictError naming the clips whose are not finite
        (samples so large that their features overflow)."""
        probs = self.model_probabilities(torch.stack([self.clip(p) for p in paths]))
        bad = [str(p) for p, ok in zip(paths, probs.isfinite().all(dim=1), strict=True) if not ok]
        if bad:
            raise PredictError(f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}: the model gives no finite "
                               f"probabilities for this clip ({NONFINITE_HINT})")
        return probs

    @torch.no_grad()
    def features(self, wavs: torch.Tensor) -> torch.Tensor:
        """The model's input for clips ``wavs`` (N, samples), made as the run made its validation inputs: the
        normalised log-mels, of ``max_frames`` frames when set, and their views (``view_channels``), the augmented
        ones drawn once from the run's seed."""
        feats = apply_normalization(compute_features(wavs, self.cfg, self.device), self.cfg.normalize,
                                    self.norm_stats)
        return fixed_views(feats, wavs, self.cfg, self.device, self.norm_stats)

    def top_k(self, paths: list[str | Path], k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` (at least 1) most probable classes of each clip with their probabilities, most probable first."""
        if k < 1:
            raise PredictError(f"top-k: give the number of classes to show, at least 1 (got {k})")
        return [top_classes(probs, self.classes, k)[0] for probs in self.probabilities(paths)]


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


NORM_MODES_WITH_STATS = ("global", "audioset", "imagenet")  # the modes whose statistics come from training


def _refuse(path: Path, problem: str) -> PredictError:
    return PredictError(f"{path}: {problem}; give the .model.pt file train.py saved (--save_model final or best)")


def read_model_file(path: Path) -> dict:
    """The contents of a model file, checked to hold what :func:`audiosweep.evaluation.save_model` writes (weights,
    config, classes, statistics), with the right types; a PredictError naming the file otherwise. Loaded with
    ``weights_only``: tensors and plain containers only, never code."""
    if not is_regular(path):
        raise _refuse(path, "no such file, or not a regular file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (EOF, unpickling, zip): all of them the file's fault
        raise _refuse(path, f"not a model file saved by train.py ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else 'unreadable'})") from e
    if not isinstance(saved, dict):
        raise _refuse(path, f"holds a {type(saved).__name__}, not a saved model (a dict of weights, config, classes "
                            "and statistics)")
    missing = [k for k in ("state_dict", "config", "classes", "norm_stats") if k not in saved]
    if missing:
        raise _refuse(path, f"not a model file saved by train.py (no {', '.join(missing)})")
    problems = []
    state, classes, stats = saved["state_dict"], saved["classes"], saved["norm_stats"]
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items())):
        problems.append("state_dict is not a dict of named tensors")
    if not isinstance(saved["config"], dict):
        problems.append("config is not a dict")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)):
        problems.append("classes is not a non-empty list of distinct names")
    if not isinstance(stats, dict):
        problems.append("norm_stats is not a dict")
    if problems:
        raise _refuse(path, "; ".join(problems))
    return saved


def check_norm_stats(path: Path, cfg: Config, stats: dict) -> None:
    """The normalisation statistics a model was trained with: per-channel mean and std (finite, std > 0) for the
    modes that take them from training, one value or one per input channel."""
    if cfg.normalize not in NORM_MODES_WITH_STATS:
        return
    channels = input_shape(cfg)[0]
    values = {k: stats.get(k) for k in ("mean", "std")}
    for key, v in values.items():
        ok = (isinstance(v, list) and len(v) in (1, channels) and all(isinstance(x, (int, float)) and not
                                                                     isinstance(x, bool) and math.isfinite(x)
                                                                     for x in v))
        if not ok or (key == "std" and min(v) <= 0):
            raise _refuse(path, f"norm_stats.{key} is {str(v)[:60]}, not {'1 or ' if channels > 1 else ''}{channels} "
                                f"finite {'positive ' if key == 'std' else ''}number(s) for normalize={cfg.normalize}")


def check_weights(path: Path, saved: dict, model: torch.nn.Module, cfg: Config) -> None:
    """The saved weights fit the architecture that the saved config builds: the same names and shapes, and the
    input shape they were trained on (files of older versions do not record it)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in saved["state_dict"].items()}
    problems = []
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if missing:
        problems.append(f"{len(missing)} weight(s) of {cfg.arch} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} weight(s) {cfg.arch} has not (e.g. {unexpected[0]})")
    shapes = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if shapes:
        k = sorted(shapes)[0]
        problems.append(f"{len(shapes)} weight(s) of another shape (e.g. {k}: {found[k]}, {cfg.arch} with this "
                        f"config has {expected[k]})")
    trained_on = saved.get("input_shape")
    if trained_on is not None and list(trained_on) != list(input_shape(cfg)):
        problems.append(f"the weights were trained on inputs of shape {tuple(trained_on)}, the saved config makes "
                        f"{input_shape(cfg)} (was its config edited?)")
    if problems:
        raise _refuse(path, "weights do not fit the saved config: " + "; ".join(problems))


def load_predictor(source: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """The model saved beside a record (or the best one in a folder), rebuilt on ``device`` (a model trained
    on a GPU loads on a CPU). The file is checked first (:func:`read_model_file`, :func:`check_norm_stats`,
    :func:`check_weights`): a PredictError names what does not fit."""
    device = usable_device(str(device))  # before the model file is read: a device it lacks is a one-line error
    path = model_file(source)
    saved = read_model_file(path)
    try:
        cfg = merge([{k: v for k, v in saved["config"].items() if k in FIELDS}])
    except ConfigError as e:
        raise _refuse(path, f"its config is invalid ({' '.join(str(e).split())})") from e
    check_norm_stats(path, cfg, saved["norm_stats"])
    # the input shape it was trained on (AST's position embeddings are sized to it)
    arch = build_model(cfg, len(saved["classes"]), input_shape(cfg), pretrained=False)
    check_weights(path, saved, arch.model, cfg)
    arch.model.load_state_dict(saved["state_dict"])
    return Predictor(cfg, list(saved["classes"]), arch.model.to(device).eval(),
                     saved["norm_stats"], device)
