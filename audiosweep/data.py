"""ESC-50 on disk -> validated clips -> cached, resampled waveforms -> train/validation split."""

from __future__ import annotations

import contextlib
import hashlib
import math
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
    dup = meta.filename[meta.filename.duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: {len(dup)} clip(s) listed more than once (first: {list(dup[:3])}); restore "
                           "the official meta/esc50.csv")
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
    """Why ``path`` is not a valid ESC-50 clip (from its header), or None when it is."""
    if path.is_dir():
        return "a folder, not a file"
    if path.is_symlink() and not path.is_file():
        return "a broken or looping link"
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
    """Check every listed clip's header; fail with counts and the first culprits, or (allow_missing) warn and drop
    them."""
    problems = [clip_problem(data_dir / "audio" / f) for f in meta.filename]
    return meta[usable(data_dir, meta, problems, allow_missing)].reset_index(drop=True)


def usable(data_dir: Path, meta: pd.DataFrame, problems: list[str | None], allow_missing: bool) -> np.ndarray:
    """Mask of the clips without a problem: when some have one, fail naming counts and the first culprits per
    problem, or (allow_missing) warn and leave them out."""
    bad = pd.Series(problems, index=meta.filename).dropna()
    if bad.empty:
        return np.ones(len(meta), dtype=bool)
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
    return ~meta.filename.isin(bad.index).to_numpy()


def fingerprint(data_dir: Path, meta: pd.DataFrame) -> str:
    """Identity of the clips in use: metadata rows plus each file's name, size and modification time (a clip
    replaced by another of the same size is another clip)."""
    h = hashlib.sha1(meta[FOLD_COLUMNS].to_csv(index=False).encode())
    for f in meta.filename:
        st = (data_dir / "audio" / f).stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def clip_samples(sample_rate: int) -> int:
    """Samples of one ESC-50 clip at ``sample_rate`` (as torchaudio's resampling returns them)."""
    return math.ceil(ESC50_SAMPLES * sample_rate / ESC50_RATE)


def decode(path: Path) -> np.ndarray:
    try:
        wav, _ = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:
        raise DatasetError(f"{path}: cannot decode ({e})") from e
    if wav.shape != (ESC50_SAMPLES,):
        raise DatasetError(f"{path}: decoded {wav.shape} samples, expected ({ESC50_SAMPLES},)")
    return wav


@dataclass
class Waveforms:
    """Decoded clips: (N, samples) float16 at the run's rate; clips with NaN or infinite samples are listed in
    ``nonfinite`` (row positions) and stored as silence, so the cache itself is always finite."""

    waveforms: torch.Tensor
    nonfinite: list[int]


def load_waveforms(data_dir: Path, meta: pd.DataFrame, sample_rate: int, cache_dir: Path, fp: str,
                   num_workers: int = 4) -> torch.Tensor:
    """The waveforms of :func:`decode_clips` (clips with non-finite samples as silence)."""
    return decode_clips(data_dir, meta, sample_rate, cache_dir, fp, num_workers).waveforms


def decode_clips(data_dir: Path, meta: pd.DataFrame, sample_rate: int, cache_dir: Path, fp: str,
                 num_workers: int = 4) -> Waveforms:
    """The clips of ``meta`` at ``sample_rate``, decoded once and cached under ``cache_dir``.

    The cache is disposable: one that cannot be read, or holds the wrong shape, type or non-finite values, is
    rebuilt with a warning naming it; one that cannot be written is skipped with a warning."""
    cache = cache_dir / f"esc50-{fp}-{sample_rate}hz.pt"
    remove_stale_temp_files(cache_dir)
    if cache.is_file():
        cached = read_cache(cache, len(meta), clip_samples(sample_rate))
        if cached is not None:
            return cached
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
    wavs = wavs.to(torch.float16)  # also turns samples beyond float16's range into infinities
    bad = nonfinite_rows(wavs)
    wavs[bad] = 0
    decoded = Waveforms(wavs, bad)
    write_cache(cache, decoded)
    return decoded


def nonfinite_rows(wavs: torch.Tensor, chunk: int = 256) -> list[int]:
    """Rows of ``wavs`` holding a NaN or an infinity, checked ``chunk`` rows at a time (a mask of the whole
    tensor would take as much memory as the waveforms' bytes)."""
    return [i + int(j) for i in range(0, len(wavs), chunk)
            for j in (~torch.isfinite(wavs[i:i + chunk]).all(dim=1)).nonzero().flatten()]


def read_cache(path: Path, n_clips: int, n_samples: int) -> Waveforms | None:
    """The cached waveforms, or None (with a warning naming ``path``) when the file is not a valid cache."""
    try:
        obj = torch.load(path, weights_only=True, mmap=True)
    except Exception as e:  # truncated, empty, not a torch file, ...: all mean "rebuild it"
        problem = f"unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    else:
        wavs = obj.get("waveforms") if isinstance(obj, dict) else None
        bad = obj.get("nonfinite") if isinstance(obj, dict) else None
        if not isinstance(wavs, torch.Tensor) or not isinstance(bad, list):
            problem = "not a waveform cache"
        elif wavs.dtype != torch.float16 or tuple(wavs.shape) != (n_clips, n_samples):
            problem = f"holds {wavs.dtype} {tuple(wavs.shape)}, expected float16 {(n_clips, n_samples)}"
        elif not all(isinstance(i, int) and 0 <= i < n_clips for i in bad):
            problem = "lists rows that do not exist"
        elif nonfinite_rows(wavs):
            problem = "holds non-finite samples"
        else:
            return Waveforms(wavs, bad)
    warnings.warn(f"waveform cache {path} {problem}; decoding the clips again", stacklevel=2)
    return None


def write_cache(path: Path, decoded: Waveforms) -> None:
    """Save the cache atomically; if it cannot be written (read-only folder, full disk), warn and go on."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"waveforms": decoded.waveforms, "nonfinite": decoded.nonfinite}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:200]
        warnings.warn(f"cannot write the waveform cache {path} ({reason}); going on without it: the clips are "
                      "decoded again next run", stacklevel=2)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def remove_stale_temp_files(cache_dir: Path) -> None:
    """Delete temporary cache files whose writer (the pid in their name) is gone, e.g. a run that was killed."""
    for tmp in cache_dir.glob(".*.tmp") if cache_dir.is_dir() else []:
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    decoded = decode_clips(data_dir, meta, cfg.sample_rate, Path(cfg.cache_dir).expanduser(), fp, cfg.num_workers)
    wavs = decoded.waveforms
    if decoded.nonfinite:  # found on decoding: reported like the clip problems found from the headers
        problems = ["non-finite samples (NaN or infinity)" if i in set(decoded.nonfinite) else None
                    for i in range(len(meta))]
        keep = usable(data_dir, meta, problems, cfg.allow_missing)
        meta, wavs = meta[keep].reset_index(drop=True), wavs[torch.from_numpy(keep)]
        fp = fingerprint(data_dir, meta)
    remap = {t: i for i, t in enumerate(categories.target)}
    targets = torch.tensor([remap[t] for t in meta.target], dtype=torch.long)
    train_idx, valid_idx = split(meta, cfg)
    return AudioData(wavs, targets, classes, meta, torch.from_numpy(train_idx), torch.from_numpy(valid_idx), fp)
