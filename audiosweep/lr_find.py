"""``train.py --lr_find true``: fastai's learning-rate finder on the run's own data pipeline and model, instead of
training. Writes ``<run_id>.lr_find.png`` (fastai's plot, with its suggestions) and ``<run_id>.lr_find.json`` (the
suggestions and the smoothed (lr, loss) curve) into results_dir, prints the suggestions and the command line to
train with one. Writes no result record (the finder trains nothing worth recording, and analysis must never read
it as a run: :func:`audiosweep.results.record_files` skips these files), and starts no W&B run. A pretrained body
is frozen, as in fine_tune's first phase (fastai's own habit: the rate found is the head's)."""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from .config import Config
from .errors import EXIT_OK, AudiosweepError, UserError, refuse, signal_exit

# fastai's four suggestion methods (fastai.callback.schedule), in the order printed.
SUGGESTIONS = ("minimum", "steep", "valley", "slide")


def run_lr_find(cfg: Config, argv: list[str]) -> int:
    """Run the finder for ``cfg``; ``argv``: the command line, to print the one that trains with a suggestion."""
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window (headless GPU boxes)
    import matplotlib.pyplot as plt
    from fastai.callback import schedule
    from fastai.torch_core import set_seed

    from . import results
    from .data import prepare_data
    from .device import resolve_device
    from .pipeline import learner_for

    files = results.RunFiles.of(cfg.results_dir, results.new_run_id())
    device = resolve_device(cfg)
    set_seed(cfg.trial_num, reproducible=device.type == "cpu")
    learn = learner_for(cfg, prepare_data(cfg), device, []).learn
    with tempfile.TemporaryDirectory() as tmp:
        learn.path = Path(tmp)  # the finder saves and restores the weights in path/models: not the working folder
        found = learn.lr_find(suggest_funcs=tuple(getattr(schedule, name) for name in SUGGESTIONS))
    suggested = {name: float(getattr(found, name)) for name in SUGGESTIONS}
    if not all(math.isfinite(v) for v in suggested.values()):
        raise UserError(f"no finite suggestion ({suggested}): the loss diverged within the finder's first steps; "
                        "try more clips or a larger batch_size")
    plot, table = files.lr_find(".png"), files.lr_find(".json")
    results.write_atomic(plot, lambda f: plt.gcf().savefig(f, format="png", dpi=120, bbox_inches="tight"))
    plt.close("all")
    curve = [[float(lr), float(loss)] for lr, loss in zip(learn.recorder.lrs, learn.recorder.losses, strict=True)]
    results.write_atomic(table, lambda f: f.write(json.dumps(
        {"kind": "lr_find", "suggestions": suggested, "lr_loss": curve, "settings": cfg.effective_dict()},
        indent=1).encode()))
    print("learning-rate finder suggestions: " + ", ".join(f"{n} {v:.2e}" for n, v in suggested.items()))
    print(f"plot: {plot}\ncurve and suggestions: {table}\nno result record written (lr_find trains nothing)")
    print("train with: " + shlex.join(["python", "train.py", *without(argv, DROPPED), "--learning_rate",
                                       f"{suggested['valley']:.2e}"]) + "  (valley: fastai's default suggestion)")
    return EXIT_OK


# The options the printed training command leaves out: the finder's switch, and the rate it replaces.
DROPPED = ("lr_find", "learning_rate", "lr")


def without(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """``argv`` less the options ``--KEY=V``, ``--KEY V`` and a bare ``--KEY`` of ``keys``."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if skip:
            skip = False
        elif name in keys:
            skip = "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--")
        else:
            out.append(arg)
    return out


def main(cfg: Config, argv: list[str] | None) -> int:
    """:func:`run_lr_find` for train.py (its command line by default): bad input in one line, Ctrl-C as 130."""
    try:
        return run_lr_find(cfg, sys.argv[1:] if argv is None else argv)
    except AudiosweepError as e:
        return refuse("train.py --lr_find", e)
    except KeyboardInterrupt:
        print("train.py --lr_find: interrupted; nothing was written", file=sys.stderr)
        return signal_exit(signal.SIGINT)
