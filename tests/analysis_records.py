"""Result records for the analysis tests, written as train.py writes them, with hand-checkable numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosweep.config import Config
from audiosweep.results import Record, RunFiles, save_predictions, write_json_atomic

CLASSES = ["dog", "rooster", "rain"]


def write_run(folder: Path, run_id: str, acc: float | None, valid_loss: float = 1.0, status: str = "finished",
              preds: bool = False, test_acc: float | None = None, **config) -> dict:
    """A result record as train.py writes it (2 epochs), with the given final accuracy and config changes;
    ``test_acc``: a held-out test accuracy (of 10 test clips; with ``preds``, their predictions too)."""
    cfg = {**Config().to_dict(), **config}
    history = [] if acc is None else [
        {"epoch": 1, "train_loss": 2.0, "valid_loss": valid_loss + 0.5, "accuracy": acc - 0.1, "time_s": 1.0},
        {"epoch": 2, "train_loss": 1.5, "valid_loss": valid_loss, "accuracy": acc, "time_s": 1.0}]
    if status == "finished":
        record = Record.finished(cfg, run_id, history, evaluated_epoch=2, accuracy=acc, tta_accuracy=None,
                                 norm_stats=None, pretrained_weights=False, n_train=80, n_valid=20, feature_s=0.5,
                                 wall_time_s=3.5, env={"device": "cpu"}, classes=CLASSES, files={},
                                 test_accuracy=test_acc, n_test=None if test_acc is None else 10)
    else:
        record = Record.failed(cfg, run_id, "RuntimeError: boom", {"device": "cpu"}, 3.5, history, classes=CLASSES)
    rec = record.to_dict()
    files = RunFiles.of(folder, run_id)
    write_json_atomic(files.record, rec)
    if preds:  # 3 classes x 4 clips; 11 of 12 right
        targets = np.repeat(np.arange(3), 4)
        predicted = targets.copy()
        predicted[5] = 2
        save_predictions(files.preds, np.eye(3)[predicted], targets, CLASSES, [f"{i}.wav" for i in range(12)])
    if preds and test_acc is not None:  # 10 test clips of class 0, round(10 * test_acc) of them right
        right = round(10 * test_acc)
        save_predictions(files.predictions(test=True), np.eye(3)[[0] * right + [1] * (10 - right)],
                         np.zeros(10, dtype=int), CLASSES, [f"test{i}.wav" for i in range(10)])
    return rec


def write_study(root: Path) -> Path:
    """Sweep folder ``root/results/nmels``: n_mels 128: 0.80 / 0.82 / 0.84 (mean 0.82, std 0.02); n_mels 64:
    0.70 / 0.74 (mean 0.72, std 0.0283) and a failed run. Only r128-3 has predictions."""
    folder = root / "results" / "nmels"
    for trial, (acc, loss) in enumerate([(0.80, 0.5), (0.82, 0.6), (0.84, 0.7)], 1):
        write_run(folder, f"r128-{trial}", acc, loss, n_mels=128, trial_num=trial, preds=trial == 3)
    for trial, acc in enumerate([0.70, 0.74], 1):
        write_run(folder, f"r64-{trial}", acc, 0.9, n_mels=64, trial_num=trial)
    write_run(folder, "r64-3", None, status="failed", n_mels=64, trial_num=3)
    return folder


def write_final_study(root: Path) -> Path:
    """Sweep folder ``root/final``: fold 1: 0.80 / 0.90; fold 2: 0.70 / 0.74 / 0.78; every run with predictions."""
    folder = root / "final"
    for fold, accs in ((1, [0.80, 0.90]), (2, [0.70, 0.74, 0.78])):
        for trial, acc in enumerate(accs, 1):
            write_run(folder, f"f{fold}-t{trial}", acc, fold=fold, trial_num=trial, preds=True)
    return folder


def write_paired_study(root: Path, drop: tuple[tuple[int, int, int], ...] = ()) -> Path:
    """Sweep folder ``root/paired``: 5 folds x 5 trials for each n_mels 64 / 128 / 32, paired on (fold, trial_num).
    n_mels 64 is the base accuracy 0.70 + 0.02 fold + 0.004 trial; 128 is about 3 points better (+0.03 ± 0.005);
    32 is within ± 0.006 of 64 with a mean difference of about 0. ``drop``: (n_mels, fold, trial) runs not written."""
    folder = root / "paired"
    for fold in range(1, 6):
        for trial in range(1, 6):
            i = 5 * (fold - 1) + trial - 1
            base = 0.70 + 0.02 * fold + 0.004 * trial
            offsets = {64: 0.0, 128: 0.03 + 0.005 * (i % 3 - 1), 32: -0.006 * (-1) ** i}
            for n_mels, offset in offsets.items():
                if (n_mels, fold, trial) not in drop:
                    write_run(folder, f"m{n_mels}-f{fold}-t{trial}", round(base + offset, 4), n_mels=n_mels,
                              fold=fold, trial_num=trial)
    return folder


def is_png(path: Path, min_kb: int = 10) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > min_kb * 1024
