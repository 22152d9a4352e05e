"""Train one audio classifier on ESC-50 and write its result record.

    python train.py --arch resnet18 --n_epochs 20          # the report's best settings otherwise
    python train.py --config my.yaml --fold 3               # YAML file, then command-line overrides
    wandb agent ENTITY/PROJECT/SWEEP_ID                      # sweeps pass --key=value arguments

Every key, its type and default: ``python train.py --help``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
import warnings

from audiosweep.config import parse_args
from audiosweep.errors import (
    EXIT_FAILED,
    EXIT_OK,
    AudiosweepError,
    ConfigError,
    HungUp,
    Terminated,
    UserError,
    error_text,
    refuse,
    signal_exit,
)

# A failed run's reason -> the signal that stopped it: Ctrl-C; schedulers and W&B agents; a closed terminal or ssh.
STOPPED_BY = {"interrupted": signal.SIGINT, "terminated": signal.SIGTERM, "hangup": signal.SIGHUP}


def main(argv: list[str] | None = None, command: bool = False) -> int:
    """Train one run and write its record; the exit status. ``command``: train.py runs as a command, which exits
    on return: a signal after the record was written is ignored, not left to kill the interpreter as it shuts down
    (Python restores the default handlers then)."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cfg, _ = parse_args(argv)
        from audiosweep.preflight import check_before_work

        check_before_work(cfg)  # results folder, clip length, model input, memory: refused before any work
    except AudiosweepError as e:  # e.g. a model's config missing from the offline hub cache
        return refuse("train.py", e)
    if cfg.lr_find:  # fastai's learning-rate finder instead of training: its plot and suggestions, no record
        from audiosweep.lr_find import main as lr_find

        return lr_find(cfg, argv)

    from fastai.torch_core import set_seed

    from audiosweep import memory, results, tracking
    from audiosweep.checkpoint import Checkpoint, load_for_resume
    from audiosweep.data import prepare_data
    from audiosweep.device import resolve_device
    from audiosweep.evaluation import evaluate
    from audiosweep.pipeline import learner_for
    from audiosweep.training import History, fit, wandb_callback

    try:
        resume = load_for_resume(cfg) if cfg.resume else None  # checked before any work
    except ConfigError as e:
        return refuse("train.py", e)
    run_id = cfg.resume or results.new_run_id()
    try:
        asked = cfg
        run, cfg = tracking.start(cfg, run_id, resume=resume is not None)  # a sweep's wandb.config may change cfg
        if cfg != asked:
            check_before_work(cfg)
    except ConfigError as e:
        return refuse("train.py", e)
    run_id = run.id if run is not None else run_id
    files = results.RunFiles.of(cfg.results_dir, run_id)
    t0, history, env, classes = time.time(), History(files.progress), {"device": None}, None
    record, error, reason, written = None, None, None, {}
    stops = StopSignals().install()
    resumed = {"resumed_from_epoch": resume["epoch"]} if resume else {}
    try:
        if resume:  # from here on a failed run's record keeps the epochs of the checkpoint
            history.restore(resume["history"])
            print(f"resuming run {run_id} after epoch {resume['epoch']} of its checkpoint {files.checkpoint}")
        device = resolve_device(cfg)
        set_seed(cfg.trial_num, reproducible=device.type == "cpu")  # GPU: cuDNN autotuning, not bit-identical
        env = results.environment(str(device))
        data = prepare_data(cfg)  # validated, decoded once, cached, split
        env["dataset_fingerprint"], classes = data.fingerprint, data.classes
        saver = Checkpoint(files.checkpoint, cfg.checkpoint_every, {"run_id": run_id, "config": cfg.effective_dict()},
                           resume)
        cbs = [history, saver] + ([wandb_callback()] if run is not None else [])
        learn, stats, source, feature_s = learner_for(cfg, data, device, cbs)
        fit(learn, cfg)
        out = evaluate(learn, cfg, data, stats, files, source)  # predictions (plain, TTA) and the model, saved
        acc, written = out.accuracy, out.files
        evaluated = learn.best_epoch.evaluated  # checkpoint best: the best epoch's weights were evaluated
        record = results.Record.finished(
            cfg.effective_dict(), run_id, history.rows, evaluated_epoch=evaluated, accuracy=acc,
            tta_accuracy=out.tta_accuracy, norm_stats=stats, pretrained_weights=learn.model_body.pretrained,
            n_train=len(data.train_idx), n_valid=len(data.valid_idx), feature_s=round(feature_s, 3),
            wall_time_s=round(time.time() - t0, 3), env=env, classes=classes, files=written,
            test_accuracy=out.test_accuracy, test_tta_accuracy=out.test_tta_accuracy,
            n_test=len(data.test_idx) if len(data.test_idx) else None, **resumed)
        tta = f", with {cfg.tta}-view TTA {out.tta_accuracy:.4f}" if out.tta_accuracy is not None else ""
        print(f"validation accuracy: {acc:.4f} of epoch {evaluated} (best {record.summary.best_accuracy:.4f}{tta})")
        if out.test_accuracy is not None:
            tta = f", with {cfg.tta}-view TTA {out.test_tta_accuracy:.4f}" if out.test_tta_accuracy is not None else ""
            print(f"test accuracy: {out.test_accuracy:.4f} on the {len(data.test_idx)} held-out clips{tta}")
    except BaseException as e:
        e = memory.explain_oom(e, cfg)  # out of memory: which batch size and arch failed, and what to change
        error = error_text(e)
        reason = getattr(e, "reason", "interrupted" if isinstance(e, KeyboardInterrupt) else "error")
        if not isinstance(e, (UserError, Terminated, KeyboardInterrupt)):
            traceback.print_exc()
        print(f"train.py: run failed: {error}", file=sys.stderr)
    finally:
        stops.shielded = True  # from here on a signal is only noted: nothing interrupts the record's writing
        if record is None:
            record = results.Record.failed(cfg.effective_dict(), run_id, error, env, round(time.time() - t0, 3),
                                           history.rows, reason=reason, classes=classes, files=written, **resumed)
        written, problem = record.write(files.record)
        # A finished run leaves no checkpoint, nor a diverged one (resumed, it would diverge again); others keep it
        if written and (record.status == "finished" or reason == "diverged"):
            files.checkpoint.unlink(missing_ok=True)
        if problem:
            print(f"train.py: {problem}; the record is in {written}" if written else
                  f"train.py: {problem}, nor in {', '.join(map(str, results.fallback_dirs()))}; the record:\n"
                  + json.dumps(record.to_dict()), file=sys.stderr, flush=True)
        print(f"result record: {written or 'not written'} ({record.status})", flush=True)
        tracking.finish(run, record.summary, failed=record.status != "finished", env=env)
        stops.restore(ignore=command)
    if stops.first is not None:  # stopped from outside: the status a shell gives a command its signal stopped
        return signal_exit(stops.first)
    if reason in STOPPED_BY:
        return signal_exit(STOPPED_BY[reason])
    return EXIT_OK if record.status == "finished" and not problem else EXIT_FAILED


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP while a run trains. The first one stops the run (KeyboardInterrupt; Terminated;
    HungUp), which is then recorded as failed; any later one, and any while the record is written (``shielded``),
    is only noted, so that no second signal (SIGTERM, then Ctrl-C 20 ms later; Ctrl-C during the record's retry on
    a full disk) can interrupt the record's writing. ``first`` gives the command's exit status. A signal ignored
    when the run starts (``nohup`` ignores SIGHUP) stays ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    RAISES = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated, signal.SIGHUP: HungUp}

    def __init__(self):
        self.first: int | None = None
        self.shielded = False
        self.previous: dict[int, object] = {}

    def install(self) -> StopSignals:
        for signum in self.SIGNALS:
            if signal.getsignal(signum) != signal.SIG_IGN:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def restore(self, ignore: bool = False) -> None:
        """The handlers as they were before :meth:`install`, or (``ignore``) the signals ignored."""
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore else handler)

    def handle(self, signum: int, frame) -> None:
        if self.first is not None:
            return
        self.first = signum
        if not self.shielded:
            raise self.RAISES[signum](f"received {signal.Signals(signum).name}")


def exit_now(code: int) -> None:
    """End the process once what the run wrote is out: W&B's service has written out the finished run, and
    stdout and stderr are flushed (the record, the predictions and the model are closed files by now). Skips the
    interpreter's shutdown, which takes 2-5 s after a run (freeing torch's modules and tensors one by one)."""
    if (wandb := sys.modules.get("wandb")) is not None:
        wandb.teardown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        code = main(command=True)
    except KeyboardInterrupt:  # Ctrl-C before the run began (imports, checks, W&B start): it has nothing to record
        print("train.py: interrupted before the run began; nothing was recorded", file=sys.stderr)
        code = signal_exit(signal.SIGINT)
    exit_now(code)
