"""A registered dataset on disk -> validated clips -> cached, resampled waveforms -> train/validation split.

The datasets themselves (how their clips are listed, whether their format is strict) are in
:mod:`audiosweep.datasets`; everything here serves all of them."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio
import xxhash  # installed with wandb: hashes at memory speed, 20x blake2b
from tqdm.std import tqdm  # not tqdm.auto: it warns in Jupyter without ipywidgets

from .config import Config
from .datasets import DatasetDef, check_labels, dataset_entry
from .datasets.esc50 import (  # noqa: F401 (ESC-50's names, re-exported where they have always been imported from)
    ESC50_RATE,
    ESC50_SAMPLES,
    FOLD_COLUMNS,
    META,
    official_metadata,
    read_metadata,
)
from .datasets.presence import needs_download, title
from .download import download_archives, download_dataset, mirrored, published_checksums
from .errors import DatasetError
from .locks import exclusive
from .results import write_atomic


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
    test_idx: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # held out: test_fold


@dataclass(frozen=True)
class ClipSpec:
    """Where a dataset's clips are, what they must look like, and the length the run makes them (the defaults:
    ESC-50 as it always ran)."""

    dataset: str = "esc50"
    audio_dir: str = "audio"  # under data_dir
    strict: bool = True  # every clip exactly native_seconds at native_rate, mono; else converted
    native_rate: int | None = ESC50_RATE
    native_seconds: float = 5.0
    seconds: float = 5.0  # what the run pads or crops every clip to
    pad_mode: str = "zeros"
    fingerprint_columns: tuple[str, ...] = tuple(FOLD_COLUMNS)

    @classmethod
    def of(cls, entry: DatasetDef, cfg: Config) -> ClipSpec:
        return cls(entry.name, entry.audio_dir, entry.strict, entry.native_rate, entry.default_seconds,
                   cfg.clip_length, cfg.pad_mode, entry.fingerprint_columns)

    @property
    def title(self) -> str:
        return title(self.dataset)


ESC50_CLIPS = ClipSpec()


def header(path: Path) -> sf._SoundFileInfo | str:
    """The audio header of ``path``, or why there is none."""
    if path.is_dir():
        return "a folder, not a file"
    if path.is_symlink() and not path.is_file():
        return "a broken or looping link"
    if not path.is_file():
        return "missing"
    try:
        return sf.info(str(path))
    except Exception:
        return "unreadable"


def header_problem(info: sf._SoundFileInfo | str, spec: ClipSpec) -> str | None:
    if isinstance(info, str):
        return info
    if not spec.strict:
        return "empty" if info.frames == 0 else None
    if info.channels != 1:
        return "not mono"
    if info.samplerate != spec.native_rate:
        return "wrong sample rate"
    if info.frames != n_samples(spec.native_seconds, spec.native_rate):
        return "wrong length"
    return None


def clip_problem(path: Path, spec: ClipSpec = ESC50_CLIPS) -> str | None:
    """Why ``path`` is not a valid clip of the dataset (from its header), or None when it is."""
    return header_problem(header(path), spec)


def validate_clips(data_dir: Path, meta: pd.DataFrame, allow_missing: bool, spec: ClipSpec = ESC50_CLIPS,
                   sample_rate: int | None = None) -> pd.DataFrame:
    """Check every listed clip's header; fail with counts and the first culprits, or (allow_missing) warn and drop
    them. Clips a variable dataset converts (downmixed, padded, cropped, of several rates) are reported in one
    warning."""
    infos = [header(data_dir / spec.audio_dir / f) for f in meta.filename]
    keep = usable(data_dir, meta, [header_problem(i, spec) for i in infos], allow_missing, spec)
    if not spec.strict:
        report_conversions(data_dir, [i for i, k in zip(infos, keep, strict=True) if k], spec, sample_rate)
    return meta[keep].reset_index(drop=True)


def report_conversions(data_dir: Path, infos: list[sf._SoundFileInfo], spec: ClipSpec,
                       sample_rate: int | None) -> None:
    """One warning counting the clips that are downmixed, padded or cropped, and the rates resampled from."""
    n = {"multichannel": sum(i.channels > 1 for i in infos),
         "padded": sum(i.frames < n_samples(spec.seconds, i.samplerate) for i in infos),
         "cropped": sum(i.frames > n_samples(spec.seconds, i.samplerate) for i in infos)}
    rates = pd.Series([i.samplerate for i in infos]).value_counts().sort_index()
    if not (any(n.values()) or len(rates) > 1):
        return
    parts = [f"{n['multichannel']} multichannel (downmixed to mono)"] if n["multichannel"] else []
    parts += [f"{n['padded']} shorter than {spec.seconds:g} s (padded: {spec.pad_mode})"] if n["padded"] else []
    parts += [f"{n['cropped']} longer than {spec.seconds:g} s (cropped to their first {spec.seconds:g} s)"
              ] if n["cropped"] else []
    to = f" to {sample_rate} Hz" if sample_rate else ""
    parts.append("sample rates " + ", ".join(f"{r} Hz: {c}" for r, c in rates.items()) + f" (resampled{to})")
    warnings.warn(f"{spec.title} at {data_dir}: of {len(infos)} clips, " + "; ".join(parts), stacklevel=3)


def usable(data_dir: Path, meta: pd.DataFrame, problems: list[str | None], allow_missing: bool,
           spec: ClipSpec = ESC50_CLIPS) -> np.ndarray:
    """Mask of the clips without a problem: when some have one, fail naming counts and the first culprits per
    problem, or (allow_missing) warn and leave them out."""
    bad = pd.Series(problems, index=meta.filename).dropna()
    if bad.empty:
        return np.ones(len(meta), dtype=bool)
    parts = []
    for why, names in bad.groupby(bad, sort=False):
        parts.append(f"{len(names)} {why} (first: {', '.join(names.index[:3])})")
    summary = (f"{spec.title} at {data_dir}: {len(bad)} of {len(meta)} listed clips unusable: " + "; ".join(parts))
    if len(bad) == len(meta):
        raise DatasetError(summary + ". No usable clip left.")
    if not allow_missing:
        fix = f"Fix or re-download the dataset (delete {data_dir} and rerun)" if spec.strict else \
            "Fix, replace or remove them"
        raise DatasetError(summary + f". {fix}, or pass --allow_missing true to use the valid clips only.")
    warnings.warn(summary + f"; using the {len(meta) - len(bad)} valid clips (allow_missing)", stacklevel=2)
    return ~meta.filename.isin(bad.index).to_numpy()


def clip_identities(data_dir: Path, meta: pd.DataFrame, spec: ClipSpec = ESC50_CLIPS,
                    mode: str = "stat") -> list[str]:
    """What identifies each clip of ``meta``: its name, size and modification time (``stat``), or its name and a
    hash of its bytes (``content``: every clip is read, so a clip replaced with its size and time restored is
    another clip)."""
    paths = [data_dir / spec.audio_dir / f for f in meta.filename]
    if mode == "content":
        return [f"{f}:{_file_hash(p)}" for f, p in zip(meta.filename, paths, strict=True)]
    return [f"{f}:{st.st_size}:{st.st_mtime_ns}" for f, st in zip(meta.filename, map(os.stat, paths), strict=True)]


def _file_hash(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def combine_fingerprint(meta: pd.DataFrame, identities: list[str], spec: ClipSpec = ESC50_CLIPS) -> str:
    """The fingerprint of ``meta``'s rows with the :func:`clip_identities` of its clips."""
    h = hashlib.sha1(meta[list(spec.fingerprint_columns)].to_csv(index=False).encode())
    for ident in identities:
        h.update(f"{ident};".encode())
    return h.hexdigest()[:16]


def fingerprint(data_dir: Path, meta: pd.DataFrame, spec: ClipSpec = ESC50_CLIPS, mode: str = "stat") -> str:
    """Identity of the clips in use: metadata rows plus each clip's :func:`clip_identities` (a clip replaced by
    another of the same size is another clip; of the same size and time too with ``mode`` content)."""
    return combine_fingerprint(meta, clip_identities(data_dir, meta, spec, mode), spec)


def n_samples(seconds: float, sample_rate: int) -> int:
    """Samples of ``seconds`` at ``sample_rate``, rounded up (as torchaudio's resampling returns them)."""
    return math.ceil(round(seconds * sample_rate, 6))  # round: 0.1 s x 16000 Hz is 1600.0000000000002


def clip_samples(cfg: Config) -> int:
    """Samples of one clip of the run: its clip length at its sample rate."""
    return n_samples(cfg.clip_length, cfg.sample_rate)


def decode(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 samples and the sample rate of ``path``."""
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise DatasetError(f"{path}: cannot decode ({e})") from e
    return wav, rate


def conform(wav: np.ndarray, rate: int, spec: ClipSpec, path: Path) -> np.ndarray:
    """One mono clip of ``spec.seconds`` at its own rate: downmixed, then cropped or padded (zeros, or the clip
    repeated). A strict dataset's clip must have decoded exactly as its header said."""
    if spec.strict and (rate != spec.native_rate or wav.shape != (n_samples(spec.native_seconds, rate), 1)):
        expected = (n_samples(spec.native_seconds, spec.native_rate),)
        raise DatasetError(f"{path}: decoded {wav.shape[:1] if wav.shape[1] == 1 else wav.shape} samples at {rate} "
                           f"Hz, expected {expected} at {spec.native_rate} Hz")
    mono = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    n = n_samples(spec.seconds, rate)
    if len(mono) >= n or spec.pad_mode == "zeros":
        return np.pad(mono[:n], (0, max(0, n - len(mono))))
    return np.resize(mono, n)  # repeats the clip cyclically up to n samples


@dataclass
class Waveforms:
    """Decoded clips: (N, samples) float16 at the run's rate; clips with NaN or infinite samples are listed in
    ``nonfinite`` (row positions), clips that failed to decode (their header read, their body did not) in
    ``undecodable``; both are stored as silence, so the cache itself is always finite."""

    waveforms: torch.Tensor
    nonfinite: list[int]
    undecodable: list[int] = field(default_factory=list)


def load_waveforms(data_dir: Path, meta: pd.DataFrame, sample_rate: int, cache_dir: Path, fp: str,
                   num_workers: int = 4, spec: ClipSpec = ESC50_CLIPS) -> torch.Tensor:
    """The waveforms of :func:`decode_clips` (clips with non-finite samples as silence)."""
    return decode_clips(data_dir, meta, sample_rate, cache_dir, fp, num_workers, spec).waveforms


def decode_clips(data_dir: Path, meta: pd.DataFrame, sample_rate: int, cache_dir: Path, fp: str,
                 num_workers: int = 4, spec: ClipSpec = ESC50_CLIPS) -> Waveforms:
    """The clips of ``meta`` as ``spec`` makes them (mono, ``spec.seconds`` long) at ``sample_rate``, decoded once
    and cached under ``cache_dir``.

    The cache is disposable: one that cannot be read, holds the wrong shape or type, or whose contents do not
    match its checksum, is rebuilt with a warning naming it; one that cannot be written is skipped with a warning.
    A clip whose body fails to decode (or decodes to another length than its header said) is listed in
    ``undecodable`` and left silent.
    """
    cache = cache_dir / f"{spec.dataset}-{spec.seconds:g}s-{spec.pad_mode}-{fp}-{sample_rate}hz.pt"
    remove_stale_temp_files(cache_dir)
    n = n_samples(spec.seconds, sample_rate)
    if cache.is_file():
        cached = read_cache(cache, len(meta), n)
        if cached is not None:
            return cached
    paths = [data_dir / spec.audio_dir / f for f in meta.filename]

    def load(path: Path) -> tuple[np.ndarray, int] | None:
        try:
            wav, rate = decode(path)
            return conform(wav, rate, spec, path), rate
        except DatasetError:  # the header read (validate_clips), the body did not: a clip problem
            return None

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        raw = list(tqdm(pool.map(load, paths), total=len(paths), desc="decoding audio", unit="clip", disable=None))
    undecodable = [i for i, r in enumerate(raw) if r is None]
    wavs = torch.zeros(len(raw), n, dtype=torch.float16)
    rates = np.array([0 if r is None else r[1] for r in raw])
    for rate in np.unique(rates[rates > 0]):  # clips of one rate have one length: resampled in batches
        rows = np.flatnonzero(rates == rate)
        for i in range(0, len(rows), 64):
            chunk = rows[i:i + 64]
            x = torch.from_numpy(np.stack([raw[j][0] for j in chunk]))
            if rate != sample_rate:
                x = torchaudio.functional.resample(x, int(rate), sample_rate)
            x = torch.nn.functional.pad(x[:, :n], (0, max(0, n - x.shape[1])))  # rounding of the count only
            wavs[torch.from_numpy(chunk)] = x.to(torch.float16)  # beyond float16's range: infinities
    del raw
    bad = nonfinite_rows(wavs)
    wavs[bad] = 0
    decoded = Waveforms(wavs, bad, undecodable)
    write_cache(cache, decoded)
    return decoded


def nonfinite_rows(wavs: torch.Tensor, chunk: int = 256) -> list[int]:
    """Rows of ``wavs`` holding a NaN or an infinity, checked ``chunk`` rows at a time (a mask of the whole
    tensor would take as much memory as the waveforms' bytes). A chunk's minimum and maximum (a NaN propagates
    through both, an infinity is one of them) clear it without a mask: 36x faster on 420 MiB of float16 (0.055 s
    instead of 2.0 s, one thread); only a chunk they do not clear is searched row by row."""
    bad = []
    for i in range(0, len(wavs), chunk):
        rows = wavs[i:i + chunk]
        if not torch.isfinite(torch.stack(torch.aminmax(rows))).all():
            bad += [i + int(j) for j in (~torch.isfinite(rows).all(dim=1)).nonzero().flatten()]
    return bad


def checksum(decoded: Waveforms) -> str:
    """xxh3-128 of the waveforms' bytes, shape and row lists: one pass over the cache (measured on the ESC-50
    slice, 414 clips at 16 kHz, 66 MB: 0.002 s; blake2b takes 0.17 s)."""
    wavs = decoded.waveforms.contiguous()
    h = xxhash.xxh3_128(f"{tuple(wavs.shape)}{wavs.dtype}{decoded.nonfinite}{decoded.undecodable}".encode())
    h.update(wavs.view(torch.uint8).numpy() if wavs.numel() else b"")
    return "xxh3_128:" + h.hexdigest()


def read_cache(path: Path, n_clips: int, n_samples: int) -> Waveforms | None:
    """The cached waveforms, or None (with a warning naming ``path``) when the file is not a valid cache: it
    cannot be read, holds the wrong shape or type, or its contents do not match its checksum (bytes overwritten
    in place; a cache of an older version, which had none)."""
    try:
        obj = torch.load(path, weights_only=True, mmap=True)
    except Exception as e:  # truncated, empty, not a torch file, ...: all mean "rebuild it"
        problem = f"unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    else:
        obj = obj if isinstance(obj, dict) else {}
        wavs, bad, lost = obj.get("waveforms"), obj.get("nonfinite"), obj.get("undecodable", [])
        if not isinstance(wavs, torch.Tensor) or not isinstance(bad, list) or not isinstance(lost, list):
            problem = "not a waveform cache"
        elif wavs.dtype != torch.float16 or tuple(wavs.shape) != (n_clips, n_samples):
            problem = f"holds {wavs.dtype} {tuple(wavs.shape)}, expected float16 {(n_clips, n_samples)}"
        elif not all(isinstance(i, int) and 0 <= i < n_clips for i in bad + lost):
            problem = "lists rows that do not exist"
        elif "checksum" not in obj:
            problem = "has no checksum (written by an older version)"
        elif obj["checksum"] != checksum(cached := Waveforms(wavs, bad, lost)):
            problem = "does not match its checksum (corrupted)"
        else:
            return cached  # the checksum is of what write_cache wrote: finite samples, so no need to look again
    warnings.warn(f"waveform cache {path} {problem}; decoding the clips again", stacklevel=2)
    return None


def write_cache(path: Path, decoded: Waveforms) -> None:
    """Save the cache atomically (:func:`results.write_atomic`) with its :func:`checksum`; if it cannot be
    written (read-only folder, full disk), warn and go on."""
    obj = {"waveforms": decoded.waveforms, "nonfinite": decoded.nonfinite, "undecodable": decoded.undecodable,
           "checksum": checksum(decoded)}
    try:
        write_atomic(path, lambda f: torch.save(obj, f))
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:200]
        warnings.warn(f"cannot write the waveform cache {path} ({reason}); going on without it: the clips are "
                      "decoded again next run", stacklevel=2)


def remove_stale_temp_files(cache_dir: Path) -> None:
    """Delete temporary cache files whose writer (the pid in their name: ``.NAME.PID.tmp`` of older versions,
    ``.NAME.PID.RANDOM.tmp`` now) is gone, e.g. a run that was killed. Only the name is removed: a link planted
    there is unlinked, never followed."""
    for tmp in cache_dir.glob(".*.tmp") if cache_dir.is_dir() else []:
        m = re.search(r"\.(\d+)\.[a-z0-9_]{8}\.tmp$", tmp.name) or re.search(r"\.(\d+)\.tmp$", tmp.name)
        if m and not _alive(int(m[1])):
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


# Seeds the stratified test share: the same test clips for every trial_num (HEAR and SpeechBrain keep their test
# sets fixed across seeds), so runs that differ in their seed are tested on one set.
TEST_SEED = 0


def split(meta: pd.DataFrame, cfg: Config, group: str = "src_file") -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and validation clips; a stratified split keeps each ``group`` on one side."""
    train_idx, valid_idx, _ = split_test(meta, cfg, group)
    return train_idx, valid_idx


def split_test(meta: pd.DataFrame, cfg: Config, group: str = "src_file") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of the training, validation and held-out test clips (:func:`held_out`); training is what
    neither validates nor tests."""
    test = held_out(meta, cfg, group)
    if cfg.split == "official":
        valid = (meta.fold == cfg.valid_fold).to_numpy()
    else:  # valid_pct of the clips the test share leaves
        rest = np.flatnonzero(~test)
        valid = np.zeros(len(meta), dtype=bool)
        valid[rest[_grouped_stratified(meta.iloc[rest].reset_index(drop=True), cfg.valid_pct,
                                       np.random.default_rng(cfg.trial_num), group)]] = True
    train_idx, valid_idx, test_idx = np.flatnonzero(~valid & ~test), np.flatnonzero(valid), np.flatnonzero(test)
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise DatasetError(f"split={cfg.split} (fold={cfg.valid_fold}, valid_pct={cfg.valid_pct}) leaves "
                           f"{len(train_idx)} training and {len(valid_idx)} validation clips among the "
                           f"{len(meta)} usable ones; use another fold or split=stratified")
    if (cfg.test_fold is not None or cfg.test_pct > 0) and len(test_idx) == 0:
        which = f"test_fold={cfg.test_fold}" if cfg.test_fold is not None else f"test_pct={cfg.test_pct}"
        raise DatasetError(f"{which} holds out none of the {len(meta)} usable clips; give a fold the dataset has, "
                           "or a larger test_pct")
    return train_idx, valid_idx, test_idx


def held_out(meta: pd.DataFrame, cfg: Config, group: str = "src_file") -> np.ndarray:
    """The held-out test clips: the clips of ``test_fold`` (official split), or ``test_pct`` of each class drawn
    with :data:`TEST_SEED`, whatever ``trial_num`` (stratified); none by default."""
    if cfg.split == "official" and cfg.test_fold is not None:
        return (meta.fold == cfg.test_fold).to_numpy()
    if cfg.split == "stratified" and cfg.test_pct > 0:
        return _grouped_stratified(meta, cfg.test_pct, np.random.default_rng(TEST_SEED), group)
    return np.zeros(len(meta), dtype=bool)


def _grouped_stratified(meta: pd.DataFrame, valid_pct: float, rng: np.random.Generator,
                        group: str = "src_file") -> np.ndarray:
    """Validation mask: whole recordings (``group``, which can span classes) in random order, each taken
    while no class it touches exceeds its ``valid_pct`` quota."""
    quota = (meta.target.value_counts() * valid_pct).round()
    taken = pd.Series(0, index=quota.index)
    valid = np.zeros(len(meta), dtype=bool)
    groups = meta.groupby(group).indices
    for key in rng.permutation(np.array(list(groups), dtype=object)):
        counts = meta.target.iloc[groups[key]].value_counts()
        if (taken[counts.index] + counts <= quota[counts.index]).all():
            taken[counts.index] += counts
            valid[groups[key]] = True
    return valid


def ensure_dataset(cfg: Config) -> Path:
    """The dataset root; a downloadable dataset (ESC-50, UrbanSound8K, GTZAN, DCASE 2017 scenes) is downloaded
    from ``cfg.download_url`` (by default its official archive; for a dataset in several archives, the folder URL
    they are fetched from) first when its marker is absent or a download of several archives was interrupted.

    The download holds a lock beside the folder: the runs of a sweep started at once download it once, the others
    wait for it and then find it there."""
    entry = dataset_entry(cfg.dataset_name)
    data_dir = Path(cfg.data_root).expanduser()
    if entry.download_marker is None:
        if not data_dir.is_dir():
            raise DatasetError(f"data_dir {data_dir}: no such folder (dataset {entry.name} holds your own clips: "
                               "point --data_dir at them)")
        return data_dir
    if not needs_download(entry, data_dir):
        return data_dir
    named = title(entry.name)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(data_dir.parent / f".{data_dir.name}.download.lock",
                   busy=lambda _: print(f"{named}: another process is downloading it into {data_dir}; waiting for it",
                                        flush=True)):
        if not needs_download(entry, data_dir):  # the process we waited for brought it
            return data_dir
        if entry.download_urls:
            urls = mirrored(entry.download_urls, cfg.download_url)
            print(f"{named} not (completely) in {data_dir}: downloading its {len(urls)} archives from "
                  f"{urls[0].rsplit('/', 1)[0]}/")
            download_archives(urls, data_dir, marker=entry.download_marker, checksums=_checksums(entry))
        else:
            url = cfg.download_url or entry.download_url
            print(f"{named} not found in {data_dir}: downloading {url}")
            download_dataset(url, data_dir, marker=entry.download_marker, checksums=_checksums(entry))
    return data_dir


def _checksums(entry: DatasetDef) -> dict[str, tuple[str, str]]:
    """The checksums the dataset's host publishes for its archives; none (with a warning) when unreachable."""
    if not entry.checksums_url:
        return {}
    try:
        return published_checksums(entry.checksums_url)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError; bad JSON a ValueError
        warnings.warn(f"cannot read the published checksums at {entry.checksums_url} ({e}); the archives are "
                      "checked as archives only", stacklevel=2)
        return {}


def prepare_data(cfg: Config) -> AudioData:
    """Everything between the files on disk and labelled waveforms with the run's split."""
    entry = dataset_entry(cfg.dataset_name)
    spec = ClipSpec.of(entry, cfg)
    data_dir = ensure_dataset(cfg)
    meta = entry.list_clips(data_dir, metadata=cfg.metadata, split=cfg.split, fold=cfg.valid_fold)
    categories = meta.drop_duplicates("target").sort_values("target")
    classes = categories.label.astype(str).tolist()
    meta = validate_clips(data_dir, meta, cfg.allow_missing, spec, cfg.sample_rate)
    if not entry.strict:  # dropped clips (allow_missing) can leave a class a single clip
        check_labels(meta, f"{spec.title} at {data_dir} (usable clips)")
    identities = clip_identities(data_dir, meta, spec, cfg.fingerprint)
    fp = combine_fingerprint(meta, identities, spec)
    decoded = decode_clips(data_dir, meta, cfg.sample_rate, Path(cfg.cache_dir).expanduser(), fp, cfg.num_workers,
                           spec)
    wavs = decoded.waveforms
    if decoded.nonfinite or decoded.undecodable:  # found on decoding: reported like the problems of the headers
        why = {**{i: "non-finite samples (NaN or infinity)" for i in decoded.nonfinite},
               **{i: "undecodable past the header" for i in decoded.undecodable}}
        keep = usable(data_dir, meta, [why.get(i) for i in range(len(meta))], cfg.allow_missing, spec)
        meta, wavs = meta[keep].reset_index(drop=True), wavs[torch.from_numpy(keep)]
        fp = combine_fingerprint(meta, [x for x, k in zip(identities, keep, strict=True) if k], spec)
    remap = {t: i for i, t in enumerate(categories.target)}
    targets = torch.tensor([remap[t] for t in meta.target], dtype=torch.long)
    train_idx, valid_idx, test_idx = split_test(meta, cfg, "group")
    return AudioData(wavs, targets, classes, meta, torch.from_numpy(train_idx), torch.from_numpy(valid_idx), fp,
                     torch.from_numpy(test_idx))
