"""Train one audio classifier on ESC-50 and write its result record.

    python train.py --arch resnet18 --n_epochs 20          # the report's best settings otherwise
    python train.py --config my.yaml --fold 3               # YAML file, then command-line overrides
    wandb agent ENTITY/PROJECT/SWEEP_ID                      # sweeps pass --key=value arguments

Every key, its type and default: ``python train.py --help``.
"""

from __future__ import annotations

import sys
import time
import traceback
import warnings

from audiosweep.config import ConfigError, parse_args
from audiosweep.errors import UserError


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cfg, _ = parse_args(argv)
    except ConfigError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2

    from fastai.torch_core import set_seed

    from audiosweep import results, tracking
    from audiosweep.data import prepare_data
    from audiosweep.features import compute_features, normalize
    from audiosweep.training import History, build_learner, feature_dtype, fit, make_dls, resolve_device, wandb_callback

    run_id = results.new_run_id()
    try:
        run, cfg = tracking.start(cfg, run_id)  # a sweep's wandb.config may change cfg: validated again
    except ConfigError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    run_id = run.id if run is not None else run_id
    files = results.RunFiles.of(cfg.results_dir, run_id)
    t0, history, summary, env, classes = time.time(), History(), results.Summary(), {"device": None}, None
    status, error = "failed", None
    try:
        device = resolve_device(cfg)
        set_seed(cfg.trial_num, reproducible=device.type == "cpu")  # GPU: cuDNN autotuning, not bit-identical
        env = results.environment(str(device))
        data = prepare_data(cfg)  # validated, decoded once, cached, split
        env["dataset_fingerprint"], classes = data.fingerprint, data.classes
        t_feat = time.time()
        feats = compute_features(data.waveforms, cfg, device, out_dtype=feature_dtype(cfg, device))
        feats, stats = normalize(feats, cfg.normalize, data.train_idx)
        feature_s = time.time() - t_feat
        print(f"{len(data.train_idx)} training / {len(data.valid_idx)} validation clips, {len(data.classes)} "
              f"classes, features {tuple(feats.shape[1:])} on {device} in {feature_s:.1f}s")
        dls = make_dls(feats, data.targets, data.train_idx, data.valid_idx, cfg, channels_last=device.type == "cuda",
                       device=device)
        del feats
        cbs = [history] + ([wandb_callback()] if run is not None else [])
        learn = build_learner(cfg, dls, cfg.n_channels, len(data.classes), device, cbs)
        fit(learn, cfg)
        probs, targets = learn.get_preds(ds_idx=1)
        acc = (probs.argmax(1) == targets).float().mean().item()
        results.save_predictions(files.preds, probs.float().numpy(), targets.numpy(), data.classes,
                                 data.meta.filename.iloc[data.valid_idx.numpy()].tolist())
        accs = [r["accuracy"] for r in history.rows if r["accuracy"] is not None]
        summary = results.Summary(
            accuracy=acc, best_accuracy=max(accs, default=acc), train_loss=history.rows[-1]["train_loss"],
            valid_loss=history.rows[-1]["valid_loss"], epochs=len(history.rows), n_train=len(data.train_idx),
            n_valid=len(data.valid_idx), feature_s=round(feature_s, 3), norm_stats=stats,
            pretrained_weights=learn.pretrained_body)
        status = "finished"
        print(f"validation accuracy: {acc:.4f} (best {summary.best_accuracy:.4f})")
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
        if not isinstance(e, UserError):
            traceback.print_exc()
        print(f"train.py: run failed: {error}", file=sys.stderr)
    finally:
        summary.wall_time_s = round(time.time() - t0, 3)
        record = results.make_record(cfg.effective_dict(), run_id, status, history.rows, summary, env, error,
                                     classes=classes)
        results.write_json_atomic(files.record, record)
        print(f"result record: {files.record} ({status})")
        tracking.finish(run, summary, failed=status != "finished")
    return 0 if status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
