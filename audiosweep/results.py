"""The record contract: one JSON file per run (written atomically) and the files beside it, the metrics a run
logs, the schema of its history and summary. Every other module reads these names from here, and builds, reads
and marks a record stopped only through :class:`Record`.

    results_dir/<run_id>.json            the record: config, history, summary, env, status, error
    results_dir/<run_id>.preds.npz       validation probabilities, targets, class names and clip names
    results_dir/<run_id>.tta.preds.npz   the same, averaged over test-time augmented views (``tta``)
    results_dir/<run_id>.test.preds.npz  the held-out test clips' (``test_fold``, ``test_pct``), the same way
    results_dir/<run_id>.test.tta.preds.npz  and with test-time augmentation
    results_dir/<run_id>.model.pt        the weights and what rebuilds the model and its features (``save_model``)
    results_dir/<run_id>.progress.jsonl  one history row per epoch, appended while the run trains (sweep pruning)
    results_dir/<run_id>.ckpt.pt         the last completed epoch's state, for ``--resume``; gone once it finished

Records may sit in subfolders (one per sweep); the folders in :data:`NON_RECORD_DIRS` hold none.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import secrets
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import IO, Any, BinaryIO, NotRequired, TypedDict

import numpy as np

from .config import ENVIRONMENT, effective, keys_with_role
from .errors import ConfigError, RecordError, UserError

RECORD_VERSION = 1
RECORD_SUFFIX = ".json"
PREDS_SUFFIX = ".preds.npz"
TTA_PREDS_SUFFIX = ".tta.preds.npz"
TEST_PREDS_SUFFIX = ".test.preds.npz"
TEST_TTA_PREDS_SUFFIX = ".test.tta.preds.npz"
MODEL_SUFFIX = ".model.pt"
PROGRESS_SUFFIX = ".progress.jsonl"
LR_FIND_SUFFIX = ".lr_find"  # train.py --lr_find's <run_id>.lr_find.json and .png: no records
CHECKPOINT_SUFFIX = ".ckpt.pt"
# Set by the sweep runner for each run it starts; progress rows carry it, so the runner knows its run's file.
LAUNCH_ENV = "AUDIOSWEEP_LAUNCH_ID"
NON_RECORD_DIRS = frozenset({"wandb", "logs"})  # W&B's own files; the sweep runner's logs
REQUIRED_KEYS = ("config", "history", "summary", "status")
RECORD_KEYS = frozenset({"record_version", "run_id", *REQUIRED_KEYS})  # a JSON object with none is no record
# stopped: ended early by the sweep runner's early_terminate (pruned); done, but with no final metric.
STATUSES = ("finished", "failed", "stopped")
# ``reason`` of a failed run that was stopped from outside (Ctrl-C, SIGTERM, SIGHUP), not one that went wrong.
STOP_REASONS = ("interrupted", "terminated", "hangup")
# Keys that say where things live and how a run executes, not what it computes (Config's environment role).
NON_IDENTITY_KEYS = frozenset(keys_with_role(ENVIRONMENT))
# Metrics a run logs every epoch (history, W&B) and in its summary, with the direction that means better.
METRIC_GOALS = {"accuracy": "maximize", "best_accuracy": "maximize", "valid_loss": "minimize",
                "train_loss": "minimize"}
EPOCH_METRICS = ("train_loss", "valid_loss", "accuracy")
PROBE_BYTES = 1 << 20  # more than a record and its predictions take
PACKAGES = ["torch", "torchvision", "torchaudio", "fastai", "fastcore", "wandb", "numpy", "soundfile"]


class HistoryRow(TypedDict):
    """One training epoch; ``epoch`` counts from 1 across the frozen and unfrozen phases."""

    epoch: int
    train_loss: float | None
    valid_loss: float | None
    accuracy: float | None
    time_s: float
    trainable_params: NotRequired[int]  # parameters that trained in the epoch; absent from records before it was kept


HISTORY_KEYS = tuple(HistoryRow.__annotations__)


@dataclass
class Summary:
    """A run's final numbers; a failed run has only ``wall_time_s`` (and what it reached before failing)."""

    accuracy: float | None = None  # validation accuracy of the evaluated epoch's weights (``checkpoint``)
    best_accuracy: float | None = None  # best validation accuracy of any epoch
    train_loss: float | None = None
    valid_loss: float | None = None
    epochs: int | None = None
    evaluated_epoch: int | None = None  # whose weights were evaluated: the last epoch, or the best (checkpoint best)
    n_train: int | None = None
    n_valid: int | None = None
    feature_s: float | None = None  # seconds to compute and normalise the features
    norm_stats: dict | None = None  # normalisation statistics the model was trained with
    pretrained_weights: bool | None = None  # the body started from pretrained weights
    tta_accuracy: float | None = None  # validation accuracy of the mean over the ``tta`` views
    wall_time_s: float | None = None
    # the held-out test clips (test_fold, test_pct), evaluated once with the evaluated epoch's weights; None without
    test_accuracy: float | None = None
    test_tta_accuracy: float | None = None  # the test clips' accuracy of the mean over the ``tta`` views
    n_test: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Summary:
        """The summary of a record: keys it lacks (records of older versions) are None, keys unknown here are
        left out."""
        return cls(**{k: v for k, v in values.items() if k in SUMMARY_FIELDS})


SUMMARY_FIELDS = frozenset(f.name for f in fields(Summary))
# Summary values analysis tabulates as numbers.
TEST_METRIC = "test_accuracy"  # the held-out clips' accuracy: analysed, never optimised by a sweep
SUMMARY_METRICS = ("accuracy", "best_accuracy", "train_loss", "valid_loss", "epochs", "wall_time_s", TEST_METRIC)


@dataclass(frozen=True)
class RunFiles:
    """Where one run's files live: its record and, beside it, its predictions."""

    record: Path

    @classmethod
    def of(cls, results_dir: str | os.PathLike, run_id: str) -> RunFiles:
        return cls(Path(results_dir) / f"{run_id}{RECORD_SUFFIX}")

    @property
    def run_id(self) -> str:
        return self.record.name.removesuffix(RECORD_SUFFIX)

    @property
    def preds(self) -> Path:
        return self.record.with_name(self.run_id + PREDS_SUFFIX)

    @property
    def tta_preds(self) -> Path:
        return self.record.with_name(self.run_id + TTA_PREDS_SUFFIX)

    def predictions(self, tta: bool = False, test: bool = False) -> Path:
        """The validation (or the held-out ``test`` clips') predictions file, plain or with ``tta``."""
        suffix = {(False, False): PREDS_SUFFIX, (True, False): TTA_PREDS_SUFFIX, (False, True): TEST_PREDS_SUFFIX,
                  (True, True): TEST_TTA_PREDS_SUFFIX}[tta, test]
        return self.record.with_name(self.run_id + suffix)

    @property
    def model(self) -> Path:
        return self.record.with_name(self.run_id + MODEL_SUFFIX)

    @property
    def progress(self) -> Path:
        return self.record.with_name(self.run_id + PROGRESS_SUFFIX)

    def lr_find(self, ext: str) -> Path:
        """``train.py --lr_find``'s plot (``.png``) or suggestions and curve (``.json``)."""
        return self.record.with_name(self.run_id + LR_FIND_SUFFIX + ext)

    @property
    def checkpoint(self) -> Path:
        return self.record.with_name(self.run_id + CHECKPOINT_SUFFIX)


def is_regular(path: Path) -> bool:
    """True for a regular file (or a link to one): never a FIFO, socket or device, which opening could block on
    or read forever."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def record_files(root: Path, recursive: bool = True, irregular: list[Path] | None = None) -> list[Path]:
    """Candidate record files under ``root``: regular ``*.json`` files outside hidden (temporary) files and the
    folders that hold no records. The others named ``*.json`` (FIFOs, devices, folders) are left out, and added to
    ``irregular`` when given, for a warning."""
    files = []
    for path in sorted(root.rglob(f"*{RECORD_SUFFIX}") if recursive else root.glob(f"*{RECORD_SUFFIX}")):
        parts = path.relative_to(root).parts
        if NON_RECORD_DIRS & set(parts[:-1]) or any(p.startswith(".") for p in parts) or \
                path.stem.endswith(LR_FIND_SUFFIX):
            continue
        if is_regular(path):
            files.append(path)
        elif irregular is not None:
            irregular.append(path)
    return files


def config_id(config: dict[str, Any]) -> str:
    """Identity of a run's configuration: its effective values (so a record written before a knob's effect was
    recorded matches one written after), independent of key order and of the keys that say where things live."""
    core = {k: v for k, v in effective(config).items() if k not in NON_IDENTITY_KEYS}
    return hashlib.sha1(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:12]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once, at import: os.umask can only be read by setting it


def create_exclusive(folder: Path, name: str) -> tuple[int, Path]:
    """A new empty file beside ``folder/name``, of an unpredictable name (``.name.PID.RANDOM.tmp``), opened for
    writing. ``mkstemp`` opens it with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a link or a file that someone who can
    write to ``folder`` planted is never opened. Its mode is a plain file's (0o666 less the umask), not 0o600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.fchmod(fd, 0o666 & ~UMASK)
    return fd, Path(tmp)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` with the bytes ``write(file)`` writes: into a file of :func:`create_exclusive`, then
    renamed over ``path``. Readers never see half a file; a link at ``path`` is replaced, never written through;
    a failed write (a full disk) leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_exclusive(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def open_append(path: Path, mode: str = "a", exclusive: bool = False) -> IO:
    """``open(path, mode)`` for appending (``a``, ``a+``), never through a link (``O_NOFOLLOW``: an OSError when
    ``path`` is one); ``exclusive``: the file must not exist yet (``O_EXCL``)."""
    flags = os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    try:
        fd = os.open(path, flags | (os.O_EXCL if exclusive else 0), 0o666)  # less the umask, as open() would
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):  # O_NOFOLLOW (or O_EXCL) met a symbolic link
            raise UserError(f"{path} is a symbolic link, not written through (anyone who can write to "
                            f"{Path(path).parent} may have planted it): remove it and rerun") from e
        raise
    return os.fdopen(fd, mode)


def append_line(path: Path, line: str, create: bool = False) -> None:
    """Append ``line`` and a newline to ``path`` in one write (a reader never sees half a line), through
    :func:`open_append`; ``create``: the file must not exist yet, as for a run's first line."""
    with open_append(path, exclusive=create) as f:
        f.write(line + "\n")


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` with :func:`write_atomic`."""
    return write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1, allow_nan=True).encode()))


def check_results_dir(folder: str | os.PathLike, name: str = "results_dir", option: str = "--results_dir") -> Path:
    """``folder``, created if needed and shown to be writable with room to spare by writing and removing a
    probe file of :data:`PROBE_BYTES` (made by :func:`create_exclusive`); a ConfigError naming it (``name``: the
    key or option that gave it; ``option``: how to give another) otherwise. Run before any work, so that no
    trained run finds out at its end that its record cannot be written."""
    path = Path(folder).expanduser()
    probe = None
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = create_exclusive(path, "probe")
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ConfigError(f"{name}: cannot write result records to {path} ({e.strerror or e}); give "
                          f"a writable folder with free space, e.g. {option} results") from e
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                probe.unlink()
    return path


def fallback_dirs() -> list[Path]:
    """Where a record goes when its results folder stopped taking it (e.g. the disk filled during the run); the
    one in the shared temporary folder is the user's own (uid in its name, see :func:`own_folder`)."""
    return [Path.home() / ".cache" / "audiosweep" / "unsaved-records",
            Path(tempfile.gettempdir()) / f"audiosweep-unsaved-records-{os.geteuid()}"]


def own_folder(folder: Path) -> Path:
    """``folder``, created (mode 0o700) if needed; an OSError when it is a link or another user's folder, as one
    planted in a shared temporary folder would be."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{folder} is a link or not this user's folder")
    return folder


def write_record(record: dict[str, Any], path: Path) -> tuple[Path | None, str | None]:
    """Write ``record`` to ``path``, retrying once; failing that, to the first :func:`fallback_dirs` that takes
    it. Returns the path written (None if nowhere could take it) and, unless it is ``path``, why not."""
    problem = None
    for attempt in range(2):
        try:
            return write_json_atomic(path, record), None
        except OSError as e:
            problem = f"cannot write {path} ({e.strerror or e})"
            if attempt == 0:
                time.sleep(1)
    for folder in fallback_dirs():
        try:
            return write_json_atomic(own_folder(folder) / path.name, record), problem
        except OSError:
            continue
    return None, problem


def save_predictions(path: Path, probs: np.ndarray, targets: np.ndarray, classes: list[str],
                     filenames: list[str]) -> Path:
    """Validation probabilities, labels, class names and clip names, for confusion matrices offline."""
    return write_atomic(path, lambda f: np.savez_compressed(
        f, probs=probs.astype(np.float32), targets=targets.astype(np.int64), classes=np.array(classes),
        filenames=np.array(filenames)))


PREDS_KEYS = ("probs", "targets", "classes", "filenames")


def load_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``probs, targets, classes, filenames`` of a predictions file (:func:`save_predictions`), checked to agree
    (shapes, labels that are class indices, finite probabilities); a RecordError naming the file otherwise."""
    try:
        with np.load(path, allow_pickle=False) as f:
            probs, targets, classes, names = (f[k] for k in PREDS_KEYS)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise RecordError(f"{path}: not a readable predictions file ({e}); it needs {', '.join(PREDS_KEYS)}; "
                          "remove it, or rerun the run") from e
    n = len(names)
    problem = None
    if probs.ndim != 2 or probs.shape != (n, len(classes)) or targets.shape != (n,):
        problem = (f"probs {probs.shape}, targets {targets.shape}, {len(classes)} classes and {n} clip names do "
                   "not agree")
    elif not (np.issubdtype(probs.dtype, np.number) and np.isfinite(probs).all()):
        problem = "its probabilities are not all finite numbers"
    elif not (np.issubdtype(targets.dtype, np.integer) and ((targets >= 0) & (targets < len(classes))).all()):
        problem = f"its targets are not all class indices 0 to {len(classes) - 1}"
    if problem:
        raise RecordError(f"{path}: {problem}; remove it, or rerun the run")
    return probs, targets, classes, names


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str | None = None, dataset_fingerprint: str | None = None) -> dict[str, Any]:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    env = {"device": device, "python": sys.version.split()[0], "platform": platform.platform(),
           "hostname": platform.node(), "cpu_count": os.cpu_count(), "packages": versions,
           "git_commit": git_commit(), "dataset_fingerprint": dataset_fingerprint}
    if device and device.startswith("cuda"):
        import torch

        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def read_regular(path: Path) -> bytes:
    """The bytes of ``path``, an OSError when it is no regular file: opened without blocking (a FIFO put where
    the file was checked would block a plain open), then checked on the open file itself."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return f.read()


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a RecordError naming the file when it cannot be read or parsed."""
    try:
        return json.loads(read_regular(Path(path)).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise RecordError(f"{path}: not a readable result record ({e})") from e


# The type each key of a record must have for a reader to use it.
_RECORD_TYPES = {"config": dict, "history": list, "summary": dict, "status": str}
# Fractions: a finite value in [0, 1] when a record holds one.
ACCURACY_KEYS = ("accuracy", "best_accuracy", "tta_accuracy")
# Summary values that are numbers (or null); a finished run's must be finite.
NUMERIC_SUMMARY = (*ACCURACY_KEYS, "train_loss", "valid_loss", "epochs", "evaluated_epoch", "wall_time_s")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_problems(obj: dict[str, Any]) -> list[str]:
    """What makes a record's metrics unusable: values that are no numbers; accuracies outside [0, 1]; non-finite
    summary values of a finished run (a failed run may have diverged: NaN losses are its story)."""
    problems = []
    finished = obj["status"] == "finished"
    for key in NUMERIC_SUMMARY:
        value = obj["summary"].get(key)
        if value is None:
            continue
        if not _is_number(value):
            problems.append(f"summary.{key} is {value!r}, not a number")
        elif finished and not math.isfinite(value):
            problems.append(f"summary.{key} is {value}, not finite, in a finished run")
        elif key in ACCURACY_KEYS and math.isfinite(value) and not 0 <= value <= 1:
            problems.append(f"summary.{key} is {value:g}, outside [0, 1]")
    for i, row in enumerate(obj["history"]):
        for key in EPOCH_METRICS:
            value = row.get(key)
            if value is None:
                continue
            if not _is_number(value):
                problems.append(f"history[{i}].{key} is {value!r}, not a number")
            elif key == "accuracy" and not math.isnan(value) and not 0 <= value <= 1:
                problems.append(f"history[{i}].{key} is {value:g}, outside [0, 1]")
    return problems[:3]


def _identity_problems(obj: dict[str, Any]) -> list[str]:
    """A status readers do not know, or a run id that is no single file name (it names the run's files)."""
    problems = []
    if isinstance(obj["status"], str) and obj["status"] not in STATUSES:
        problems.append(f"status is {obj['status'][:40]!r}, not one of {', '.join(STATUSES)}")
    run_id = obj.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and run_id not in ("", ".", "..")
                                   and not set(run_id) & set("/\\\0")):
        problems.append(f"run_id {str(run_id)[:40]!r} is not a file name (no /, \\ or NUL)")
    return problems


class Record:
    """One run's result record. ``data`` is the JSON object as written, kept whole so that a record read and
    written back (marked stopped) keeps every field and their order; readers use the typed attributes read from
    it. Build one with :meth:`finished`, :meth:`failed` or :meth:`stopped`, read one with :meth:`load`."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.run_id: str | None = data.get("run_id")
        self.status: str = data["status"]
        self.error: str | None = data.get("error")
        # Why a failed run ended (error, interrupted, terminated, out of memory), or why a stopped one stopped.
        self.reason: str | None = data.get("reason")
        self.config: dict[str, Any] = data["config"]
        self.history: list[HistoryRow] = data["history"]
        self.summary = Summary.from_dict(data["summary"])
        self.env: dict | None = data.get("env")

    @classmethod
    def _new(cls, config: dict[str, Any], run_id: str, status: str, history: list[HistoryRow], summary: Summary,
             env: dict, error: str | None = None, **extra: Any) -> Record:
        if status not in STATUSES:
            raise ValueError(f"record status must be one of {', '.join(STATUSES)}, got {status!r}")
        return cls({"record_version": RECORD_VERSION, "run_id": run_id, "config_id": config_id(config),
                    "status": status, "error": error, "config": config, "history": history,
                    "summary": summary.to_dict(), "env": env, **extra})

    @classmethod
    def finished(cls, config: dict[str, Any], run_id: str, history: list[HistoryRow], *, evaluated_epoch: int,
                 accuracy: float, tta_accuracy: float | None, norm_stats: dict | None, pretrained_weights: bool,
                 n_train: int, n_valid: int, feature_s: float, wall_time_s: float, env: dict,
                 classes: list[str], files: dict[str, str], test_accuracy: float | None = None,
                 test_tta_accuracy: float | None = None, n_test: int | None = None, **extra: Any) -> Record:
        """A run that trained and was evaluated. Its summary comes from ``history``: the best accuracy of any
        epoch, and the losses of ``evaluated_epoch`` (counted from 1), whose weights gave ``accuracy`` (and
        ``test_accuracy`` on the held-out clips, when the run has them). ``extra``: further fields (train.py:
        ``resumed_from_epoch``, for a run continued from a checkpoint)."""
        row = history[evaluated_epoch - 1]
        accs = [r["accuracy"] for r in history if r["accuracy"] is not None]
        summary = Summary(accuracy=accuracy, best_accuracy=max(accs, default=accuracy), train_loss=row["train_loss"],
                          valid_loss=row["valid_loss"], epochs=len(history), evaluated_epoch=evaluated_epoch,
                          n_train=n_train, n_valid=n_valid, feature_s=feature_s, norm_stats=norm_stats,
                          pretrained_weights=pretrained_weights, tta_accuracy=tta_accuracy, wall_time_s=wall_time_s,
                          test_accuracy=test_accuracy, test_tta_accuracy=test_tta_accuracy, n_test=n_test)
        return cls._new(config, run_id, "finished", history, summary, env, reason=None, classes=classes,
                        files=files, **extra)

    @classmethod
    def failed(cls, config: dict[str, Any], run_id: str, error: str, env: dict, wall_time_s: float,
               history: list[HistoryRow] | None = None, **extra: Any) -> Record:
        """A run that ended without a result: ``history`` holds the epochs it trained (train.py), None when they
        are unknown (the sweep runner, for a run that wrote no record: no epoch count then). ``extra``: further
        fields, in order (train.py: reason, classes, files; the sweep runner: log, exit_code, written_by)."""
        summary = Summary(epochs=None if history is None else len(history), wall_time_s=wall_time_s)
        return cls._new(config, run_id, "failed", [] if history is None else history, summary, env, error,
                        **extra)

    def stopped(self, reason: str, by: str) -> Record:
        """This record as ``stopped`` (a run ``by`` ended early, e.g. pruned at an epoch: ``reason``), its
        history kept and no error, instead of failed."""
        return Record({**self.data, "status": "stopped", "reason": reason, "error": None, "stopped_by": by})

    @classmethod
    def load(cls, path: Path) -> Record:
        """Read one record, failing with the file's name when it is not a valid record."""
        return cls.parse(read_json(path), path)

    @classmethod
    def parse(cls, obj: Any, path: Path) -> Record:
        """The record in ``obj`` (read from ``path``) when it has a record's keys with the right types, else a
        RecordError naming ``path``. Records of older versions, with fewer keys, parse too."""
        if not isinstance(obj, dict):
            raise RecordError(f"{path}: not a result record (a JSON {type(obj).__name__}, not an object)")
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        if missing:
            raise RecordError(f"{path}: not a result record (missing {', '.join(missing)})")
        wrong = [f"{k} is a {type(obj[k]).__name__}, not a {t.__name__}" for k, t in _RECORD_TYPES.items()
                 if not isinstance(obj[k], t)]
        wrong += [f"history[{i}] is not an object" for i, row in enumerate(obj["history"] if isinstance(
            obj["history"], list) else []) if not isinstance(row, dict)][:1]
        if not wrong:
            wrong = _identity_problems(obj) or _metric_problems(obj)
        if wrong:
            raise RecordError(f"{path}: malformed result record ({'; '.join(wrong)})")
        return cls(obj)

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def write(self, path: Path) -> tuple[Path | None, str | None]:
        """Write the record to ``path`` or a fallback folder, as :func:`write_record` does."""
        return write_record(self.data, path)
