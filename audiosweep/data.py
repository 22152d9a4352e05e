"""ESC-50 on disk -> validated clips -> cached, resampled waveforms -> train/validation split."""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio
from tqdm.auto import tqdm

from .config import Config
from .download import download_dataset
from .errors import UserError

ESC50_RATE = 44100
ESC50_SAMPLES = 5 * ESC50_RATE
META = "meta/esc50.csv"
OFFICIAL_META = Path(__file__).resolve().parent.parent / "esc50_folds" / "esc50.csv"
FOLD_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


class DatasetError(UserError):
    """The dataset is missing, incomplete or invalid; the message names the culprits."""


@dataclass
class AudioData:
    """Waveforms of the usable clips with their labels and the run's split."""

    waveforms: torch.Tensor  # (N, samples) float16
    targets: torch.Tensor  # (N,) int64, 0..n_classes-1
    classes: list[str]
    meta: pd.DataFrame  # one row per clip, aligned with waveforms
    train_idx: torch.Tensor
    valid_idx: torch.Tensor
    fingerprint: str


def official_metadata() -> pd.DataFrame:
    return pd.read_csv(OFFICIAL_META)


def read_metadata(data_dir: Path) -> pd.DataFrame:
    """The dataset's own metadata, checked against the official fold assignment shipped in esc50_folds/."""
    path = data_dir / META
    try:
        meta = pd.read_csv(path)
    except Exception as e:
        raise DatasetError(f"{path}: cannot read the metadata ({e})") from e
    missing = [c for c in FOLD_COLUMNS if c not in meta.columns]
    if missing:
        raise DatasetError(f"{path}: columns {missing} missing; expected {FOLD_COLUMNS}")
    official = official_metadata().set_index("filename")
    mine = meta.set_index("filename")
    unknown = mine.index.difference(official.index)
    if len(unknown) or len(mine) != len(official):
        raise DatasetError(f"{path}: {len(mine)} rows, {len(unknown)} not in the official ESC-50 metadata "
                           f"(first: {list(unknown[:3])}); expected the official 2000 rows")
    cols = ["fold", "target", "category", "src_file"]
    differ = (mine.loc[official.index, cols].astype(str) != official[cols].astype(str)).any(axis=1)
    if differ.any():
        raise DatasetError(f"{path}: {int(differ.sum())} rows disagree with the official fold assignment "
                           f"(first: {list(official.index[differ][:3])}); restore the official meta/esc50.csv")
    return meta.reset_index(drop=True)


def clip_problem(path: Path) -> str | None:
    """Why ``path`` is not a valid ESC-50 clip, or None when it is."""
    if not path.is_file():
        return "missing"
    try:
        info = sf.info(str(path))
    except Exception:
        return "unreadable"
    if info.channels != 1:
        return "not mono"
    if info.samplerate != ESC50_RATE:
        return "wrong sample rate"
    if info.frames != ESC50_SAMPLES:
        return "wrong length"
    return None


def validate_clips(data_dir: Path, meta: pd.DataFrame, allow_missing: bool) -> pd.DataFrame:
    """Check every listed clip; fail with counts and the first culprits, or (allow_missing) warn and drop them."""
    problems = [clip_problem(data_dir / "audio" / f) for f in meta.filename]
    bad = pd.Series(problems, index=meta.filename).dropna()
    if bad.empty:
        return meta
    parts = []
    for why, names in bad.groupby(bad, sort=False):
        parts.append(f"{len(names)} {why} (first: {', '.join(names.index[:3])})")
    summary = (f"ESC-50 at {data_dir}: {len(bad)} of {len(meta)} listed clips unusable: " + "; ".join(parts))
    if len(bad) == len(meta):
        raise DatasetError(summary + ". No usable clip left.")
    if not allow_missing:
        raise DatasetError(summary + f". Fix or re-download the dataset (delete {data_dir} and rerun), "
                                     "or pass --allow_missing true to use the valid clips only.")
    warnings.warn(summary + f"; using the {len(meta) - len(bad)} valid clips (allow_missing)", stacklevel=2)
    return meta[~meta.filename.isin(bad.index)].reset_index(drop=True)


def fingerprint(data_dir: Path, meta: pd.DataFrame) -> str:
    """Identity of the clips in use: metadata rows plus each file's name and size."""
    h = hashlib.sha1(meta[FOLD_COLUMNS].to_csv(index=False).encode())
    for f in meta.filename:
        h.update(f"{f}:{(data_dir / 'audio' / f).stat().st_size};".encode())
    return h.hexdigest()[:16]


def decode(path: Path) -> np.ndarray:
    try:
        wav, _ = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:
        raise DatasetError(f"{path}: cannot decode ({e})") from e
    if wav.shape != (ESC50_SAMPLES,):
        raise DatasetError(f"{path}: decoded {wav.shape} samples, expected ({ESC50_SAMPLES},)")
    return wav


def load_waveforms(data_dir: Path, meta: pd.DataFrame, sample_rate: int, cache_dir: Path, fp: str,
                   num_workers: int = 4) -> torch.Tensor:
    """(N, samples) float16 waveforms at ``sample_rate``, decoded once and cached under ``cache_dir``."""
    cache = cache_dir / f"esc50-{fp}-{sample_rate}hz.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True, mmap=True)
    paths = [data_dir / "audio" / f for f in meta.filename]
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        raw = list(tqdm(pool.map(decode, paths), total=len(paths), desc="decoding audio", unit="clip",
                        disable=None))
    wavs = torch.from_numpy(np.stack(raw))
    del raw
    if sample_rate != ESC50_RATE:
        chunks = [torchaudio.functional.resample(wavs[i:i + 64], ESC50_RATE, sample_rate)
                  for i in range(0, len(wavs), 64)]
        wavs = torch.cat(chunks)
    wavs = wavs.to(torch.float16)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    torch.save(wavs, tmp)
    os.replace(tmp, cache)
    return wavs


def split(meta: pd.DataFrame, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and validation clips."""
    if cfg.split == "official":
        valid = (meta.fold == cfg.fold).to_numpy()
    else:
        valid = _grouped_stratified(meta, cfg.valid_pct, np.random.default_rng(cfg.trial_num))
    train_idx, valid_idx = np.flatnonzero(~valid), np.flatnonzero(valid)
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise DatasetError(f"split={cfg.split} (fold={cfg.fold}, valid_pct={cfg.valid_pct}) leaves "
                           f"{len(train_idx)} training and {len(valid_idx)} validation clips among the "
                           f"{len(meta)} usable ones; use another fold or split=stratified")
    return train_idx, valid_idx


def _grouped_stratified(meta: pd.DataFrame, valid_pct: float, rng: np.random.Generator) -> np.ndarray:
    """Validation mask: whole recordings (``src_file``, which can span classes) in random order, each taken
    while no class it touches exceeds its ``valid_pct`` quota."""
    quota = (meta.target.value_counts() * valid_pct).round()
    taken = pd.Series(0, index=quota.index)
    valid = np.zeros(len(meta), dtype=bool)
    groups = meta.groupby("src_file").indices
    for key in rng.permutation(np.array(list(groups), dtype=object)):
        counts = meta.target.iloc[groups[key]].value_counts()
        if (taken[counts.index] + counts <= quota[counts.index]).all():
            taken[counts.index] += counts
            valid[groups[key]] = True
    return valid


def ensure_dataset(cfg: Config) -> Path:
    """The dataset root, downloaded from ``cfg.download_url`` first when it lacks meta/esc50.csv."""
    data_dir = Path(cfg.data_dir).expanduser()
    if not (data_dir / META).is_file():
        print(f"ESC-50 not found in {data_dir}: downloading {cfg.download_url}")
        download_dataset(cfg.download_url, data_dir, marker=META)
    return data_dir


def prepare_data(cfg: Config) -> AudioData:
    """Everything between the files on disk and labelled waveforms with the run's split."""
    data_dir = ensure_dataset(cfg)
    meta = read_metadata(data_dir)
    if cfg.esc10:
        meta = meta[meta.esc10.astype(str).str.lower().eq("true")].reset_index(drop=True)
    categories = meta.drop_duplicates("target").sort_values("target")
    classes = categories.category.tolist()
    meta = validate_clips(data_dir, meta, cfg.allow_missing)
    fp = fingerprint(data_dir, meta)
    wavs = load_waveforms(data_dir, meta, cfg.sample_rate, Path(cfg.cache_dir).expanduser(), fp, cfg.num_workers)
    remap = {t: i for i, t in enumerate(categories.target)}
    targets = torch.tensor([remap[t] for t in meta.target], dtype=torch.long)
    train_idx, valid_idx = split(meta, cfg)
    return AudioData(wavs, targets, classes, meta, torch.from_numpy(train_idx), torch.from_numpy(valid_idx), fp)
