"""Weights & Biases: mode resolution, run start (with sweep parameters folded back into the config), summary."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from .config import ALIASES, FIELDS, Config, overlay
from .results import Summary, config_id

SWEEP_ENV = "AUDIOSWEEP_SWEEP"  # set by the local sweep runner for its runs: the sweep's name


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def no_credentials_message(subject: str, instead: str) -> str:
    """The one-line refusal of W&B online work on a machine without credentials: ``subject`` needs them; how to
    add them, or ``instead`` what to run without them."""
    return (f"{subject}: no W&B API key on this machine (neither WANDB_API_KEY nor a netrc entry of `wandb login`); "
            f"run `wandb login` or set WANDB_API_KEY, or {instead}")


def resolve_mode(cfg: Config) -> str:
    if cfg.wandb_mode != "auto":
        return cfg.wandb_mode
    return "online" if has_wandb_credentials() else "offline"


def start(cfg: Config, run_id: str, resume: bool = False):
    """Start a W&B run (or none when disabled); return ``(run, cfg)`` with sweep values applied to ``cfg``.
    ``resume``: the run continues run ``run_id`` (train.py --resume), whose W&B run goes on if W&B has it."""
    mode = resolve_mode(cfg)
    if mode == "disabled":
        return None, cfg
    import wandb

    Path(cfg.results_dir).mkdir(parents=True, exist_ok=True)
    # Group, name and tags: W&B's own variables (WANDB_RUN_GROUP, WANDB_NAME, WANDB_TAGS), set by the local
    # runner. Passed on explicitly because wandb reads the environment once per process, at its first init.
    tags = os.environ.get("WANDB_TAGS")
    run = wandb.init(project=cfg.project, config=labelled(cfg), mode=mode, dir=cfg.results_dir,
                     id=None if os.environ.get("WANDB_SWEEP_ID") else run_id, reinit="finish_previous",
                     group=os.environ.get("WANDB_RUN_GROUP"), name=os.environ.get("WANDB_NAME"),
                     tags=tags.split(",") if tags else None, resume="allow" if resume else None,
                     settings=wandb.Settings(quiet=not cfg.wandb_verbose))  # quiet: no history or summary lines
    current = cfg.effective_dict()
    # The sweep's values: our keys that differ, and the report's keys (aliases), which only a sweep sets.
    layer = {k: v for k, v in dict(run.config).items() if (k in FIELDS and v != current[k]) or k in ALIASES}
    if layer:
        cfg = overlay(cfg, layer)
        run.config.update(labelled(cfg), allow_val_change=True)
    return run, cfg


def labelled(cfg: Config) -> dict:
    """The W&B config: the effective values, the configuration id (as in the record) and, for a run of the
    local runner, the sweep's name; neither label is a Config key, so neither is read back as a sweep value."""
    values = cfg.effective_dict()
    sweep = os.environ.get(SWEEP_ENV)
    return {**values, "config_id": config_id(values), **({"sweep_name": sweep} if sweep else {})}


def finish(run, summary: Summary, failed: bool, env: dict | None = None) -> None:
    """The run's summary, and where it ran (``env``: device, package versions, git commit, as the record holds
    it), into the W&B run; then finish it."""
    if run is None:
        return
    run.summary.update({**summary.to_dict(), **({"env": env} if env else {})})
    run.finish(exit_code=1 if failed else 0)
