"""Synthetic, learnable datasets for tests and benchmarks.

Each class gets its own tone (with harmonics) inside its own noise band, at a random level, onset and
phase, so a small CNN learns the classes in a few epochs. :func:`make_synthetic_esc50` looks like ESC-50 on
disk: the official ``meta/esc50.csv`` and 5 s, 44.1 kHz, mono, 16-bit clips under the official file names.
:func:`make_synthetic_folder` and :func:`make_synthetic_csv` look like a user's own clips: several sample
rates, some stereo, lengths around 5 s, wav and flac. :func:`make_synthetic_urbansound8k` and
:func:`make_synthetic_gtzan` lay such clips out as those datasets do (their metadata, folds and file names);
:func:`make_synthetic_dcase2017` lays out fixed-length, partly stereo, 24-bit scenes as the DCASE 2017 task 1
development set does.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from .data import ESC50_RATE, ESC50_SAMPLES, META, official_metadata


def class_clip(target: int, rng: np.random.Generator, n_samples: int = ESC50_SAMPLES,
               sample_rate: int = ESC50_RATE) -> np.ndarray:
    """One 5 s clip of class ``target``: a class-specific tone and noise band at random level and onset."""
    t = np.arange(n_samples) / sample_rate
    f0 = 100.0 * 2 ** (target / 12)  # one semitone per class: 100 Hz .. 1.7 kHz
    tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, 1 / sample_rate)
    lo = 200.0 + 90.0 * target
    spectrum[(freqs < lo) | (freqs > lo * 1.5)] = 0
    band = np.fft.irfft(spectrum, n_samples)
    band /= np.abs(band).max() + 1e-9
    envelope = np.zeros(n_samples)
    start = rng.integers(0, n_samples // 2)
    envelope[start:start + rng.integers(n_samples // 4, n_samples // 2)] = 1.0
    clip = envelope * (0.5 * tone / 1.8 + 0.3 * band) + 0.01 * rng.standard_normal(n_samples)
    return (clip * rng.uniform(0.3, 0.9) / (np.abs(clip).max() + 1e-9)).astype(np.float32)


def make_synthetic_esc50(root: str | Path, esc10: bool = True, per_class_per_fold: int | None = None,
                         seed: int = 0) -> Path:
    """Write a synthetic ESC-50 tree at ``root``; returns ``root``.

    Only clips of the ESC-10 classes (``esc10``) are written, and at most ``per_class_per_fold`` per class
    and fold; the rest of the official list is absent, so runs on it need ``allow_missing``.
    """
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    meta = official_metadata()
    shutil.copy(Path(__file__).resolve().parent.parent / "esc50_folds" / "esc50.csv", root / META)
    rows = meta[meta.esc10.astype(str).str.lower().eq("true")] if esc10 else meta
    if per_class_per_fold is not None:
        rows = rows.groupby(["target", "fold"]).head(per_class_per_fold)
    rng = np.random.default_rng(seed)
    for name, target in zip(rows.filename, rows.target):
        sf.write(root / "audio" / name, class_clip(int(target), rng), ESC50_RATE, subtype="PCM_16")
    return root


VARIABLE_RATES = (22050, 44100)
VARIABLE_SECONDS = (3.0, 4.0, 5.0, 6.5)  # shorter than, as long as and longer than 5 s


def variable_clips(n_classes: int, per_class: int, seed: int) -> Iterator[tuple[int, int, np.ndarray, int]]:
    """(class, index, (frames, channels) samples, sample rate) of each clip: rates and lengths cycle through
    :data:`VARIABLE_RATES` and :data:`VARIABLE_SECONDS`, every third clip is stereo."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        for i in range(per_class):
            rate, seconds = VARIABLE_RATES[i % 2], VARIABLE_SECONDS[(i // 2) % len(VARIABLE_SECONDS)]
            clip = class_clip(8 * c, rng, int(seconds * rate), rate)  # 8 semitones apart: learnable in 2 epochs
            yield c, i, np.stack([clip, 0.8 * clip], axis=1) if i % 3 == 0 else clip[:, None], rate


def _write(path: Path, wav: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, rate, subtype="PCM_16")


def make_synthetic_folder(root: str | Path, n_classes: int = 4, per_class: int = 12, seed: int = 0) -> Path:
    """Write ``root/class_<c>/clip_<i>.wav|flac`` (dataset folder); returns ``root``."""
    root = Path(root)
    for c, i, wav, rate in variable_clips(n_classes, per_class, seed):
        _write(root / f"class_{c}" / f"clip_{i}.{'flac' if i % 4 == 1 else 'wav'}", wav, rate)
    return root


def make_synthetic_csv(root: str | Path, n_classes: int = 4, per_class: int = 12, n_folds: int = 3,
                       seed: int = 0) -> Path:
    """Write clips under ``root/clips/`` and ``root/metadata.csv`` listing them (dataset csv) with folds
    1..n_folds and groups of two clips; returns the metadata file."""
    root = Path(root)
    rows = []
    for c, i, wav, rate in variable_clips(n_classes, per_class, seed):
        name = f"clips/{c}-{i}.{'flac' if i % 4 == 1 else 'wav'}"
        _write(root / name, wav, rate)
        rows.append({"file": name, "label": f"sound {c}", "fold": 1 + (i // 2) % n_folds, "group": f"{c}-{i // 2}"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root / "metadata.csv"


URBANSOUND8K_CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
                        "gun_shot", "jackhammer", "siren", "street_music")


def make_synthetic_urbansound8k(root: str | Path, n_classes: int = 3, n_folds: int = 2, per_class_per_fold: int = 4,
                                seed: int = 0) -> Path:
    """Write an UrbanSound8K tree at ``root`` (``audio/fold<k>/<fsID>-<classID>-0-<i>.wav`` and
    ``metadata/UrbanSound8K.csv``) of variable clips, two per recording (fsID) and each recording in one fold;
    returns ``root``."""
    root = Path(root)
    rows = []
    for c, i, wav, rate in variable_clips(n_classes, n_folds * per_class_per_fold, seed):
        fold, fs_id = 1 + i // per_class_per_fold, 1000 * c + i // 2
        name = f"{fs_id}-{c}-0-{i}.wav"
        _write(root / "audio" / f"fold{fold}" / name, wav, rate)
        rows.append({"slice_file_name": name, "fsID": fs_id, "start": 0.0, "end": len(wav) / rate, "salience": 1,
                     "fold": fold, "classID": c, "class": URBANSOUND8K_CLASSES[c]})
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "metadata" / "UrbanSound8K.csv", index=False)
    return root


GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_synthetic_gtzan(root: str | Path, n_classes: int = 3, per_class: int = 8, seed: int = 0) -> Path:
    """Write a GTZAN tree at ``root`` (``genres/<genre>/<genre>.000NN.wav``) of variable clips; returns ``root``."""
    root = Path(root)
    for c, i, wav, rate in variable_clips(n_classes, per_class, seed):
        genre = GTZAN_GENRES[c]
        _write(root / "genres" / genre / f"{genre}.{i:05d}.wav", wav, rate)
    return root


DCASE2017_SCENES = ("beach", "bus", "cafe/restaurant", "car", "city_center", "forest_path", "grocery_store", "home",
                    "library", "metro_station", "office", "park", "residential_area", "train", "tram")


def make_synthetic_dcase2017(root: str | Path, n_classes: int = 3, n_folds: int = 4, per_class_per_fold: int = 2,
                             seconds: float = 10.0, sample_rate: int = 44100, seed: int = 0) -> Path:
    """Write a DCASE 2017 scenes tree at ``root``: ``audio/<location>_<start>_<end>.wav`` (every other clip
    stereo, 24-bit), ``meta.txt`` and ``evaluation_setup/fold<k>_{train,evaluate,test}.txt``; the clips of one
    scene and fold are consecutive segments of one location, each location in one fold; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "evaluation_setup").mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {k: [] for k in range(1, n_folds + 1)}
    meta = []
    for c in range(n_classes):
        for k in lines:
            location = f"{'abcdefghijklmno'[c]}{k:03d}"
            for i in range(per_class_per_fold):
                name = f"audio/{location}_{i * 10}_{i * 10 + 10}.wav"
                clip = class_clip(8 * c, rng, int(seconds * sample_rate), sample_rate)
                sf.write(root / name, np.stack([clip, 0.7 * clip], 1) if i % 2 == 0 else clip, sample_rate,
                         subtype="PCM_24")
                lines[k].append(f"{name}\t{DCASE2017_SCENES[c]}")
                meta.append(f"{lines[k][-1]}\t{location}\n")
    (root / "meta.txt").write_text("".join(meta))
    for k, evaluate in lines.items():
        setup = root / "evaluation_setup" / f"fold{k}"
        train = [line for j in lines if j != k for line in lines[j]]
        setup.with_name(setup.name + "_train.txt").write_text("".join(f"{line}\n" for line in train))
        setup.with_name(setup.name + "_evaluate.txt").write_text("".join(f"{line}\n" for line in evaluate))
        setup.with_name(setup.name + "_test.txt").write_text("".join(f"{line.split()[0]}\n" for line in evaluate))
    return root
