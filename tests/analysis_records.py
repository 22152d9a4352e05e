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


BAYES_PARAMETERS = {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-3, "max": 5e-3},
                    "mix_up": {"distribution": "uniform", "min": 0.001, "max": 1.0},
                    "arch": {"values": ["resnet18", "timm/efficientnet_b0.ra_in1k"]}}


def write_bayes_sweep(folder: Path, n: int = 32, pruned: int = 8, epochs: int = 6, rung: int = 2,
                      sweep_file: bool = True, seed: int = 0, journal: bool = False) -> Path:
    """A bayes sweep folder as the runner leaves it: ``n`` runs of ``epochs`` epochs drawn from
    :data:`BAYES_PARAMETERS` (a log-uniform learning_rate within half a decade, a uniform mix_up over 3 decades),
    the first ``pruned`` of them stopped at epoch ``rung``, and the sweep file's copy (unless not ``sweep_file``);
    with ``journal``, the Optuna study of those runs in the runner's journal file, as the runner tells it.
    Accuracy after epoch e: 0.4 + 0.3 mix_up + 0.04 e (+ 0.02 for resnet18)."""
    import yaml

    from audiosweep.sweep.spec import SWEEP_COPY

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if sweep_file:
        (folder / SWEEP_COPY).write_text(yaml.safe_dump({"method": "bayes", "metric": {"name": "accuracy", "goal":
                                         "maximize"}, "parameters": BAYES_PARAMETERS}))
    for i in range(n):
        u, v = (i + rng.uniform()) / n, ((13 * i) % n + rng.uniform()) / n  # spread over the square, as TPE does
        cfg = {**Config().to_dict(), "n_epochs": epochs, "arch": BAYES_PARAMETERS["arch"]["values"][i % 2],
               "learning_rate": float(1e-3 * 5 ** u), "mix_up": float(0.001 * 1000 ** v)}  # mix_up: 3 decades
        last = rung if i < pruned else epochs
        history = [{"epoch": e, "train_loss": 2.0, "valid_loss": 1.5,
                    "accuracy": 0.4 + 0.3 * cfg["mix_up"] + 0.04 * e + 0.02 * (i % 2 == 0), "time_s": 1.0}
                   for e in range(1, last + 1)]
        run_id = f"b{i:02d}"
        if i < pruned:
            rec = Record.failed(cfg, run_id, "terminated", {"device": "cpu"}, 2.0, history, classes=CLASSES)
            rec = rec.stopped(f"pruned at epoch {rung}", by="audiosweep.sweep")
        else:
            rec = Record.finished(cfg, run_id, history, evaluated_epoch=epochs, accuracy=history[-1]["accuracy"],
                                  tta_accuracy=None, norm_stats=None, pretrained_weights=False, n_train=80,
                                  n_valid=20, feature_s=0.5, wall_time_s=3.5, env={"device": "cpu"}, classes=CLASSES,
                                  files={})
        write_json_atomic(RunFiles.of(folder, run_id).record, rec.to_dict())
        if journal:
            _tell(folder, cfg, history, i < pruned)
    return folder


def _tell(folder: Path, cfg: dict, history: list[dict], pruned: bool) -> None:
    """One run as a trial of the study ``folder.name`` in the runner's journal file there."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from audiosweep.sweep.study import storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage(None, folder), study_name=folder.name, direction="maximize",
                                load_if_exists=True)
    dists = {"learning_rate": FloatDistribution(1e-3, 5e-3, log=True), "mix_up": FloatDistribution(0.001, 1.0),
             "arch": CategoricalDistribution(BAYES_PARAMETERS["arch"]["values"])}
    study.add_trial(optuna.trial.create_trial(
        params={k: cfg[k] for k in dists}, distributions=dists,
        state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
        value=None if pruned else history[-1]["accuracy"],
        intermediate_values={r["epoch"]: r["accuracy"] for r in history}))
