"""Classify audio clips with a model a run saved (``--save_model final`` or ``best``).

    python predict.py results/smoke/20260101-120000-abc123.json dog.wav rain.wav   # one run's model
    python predict.py results/smoke clips/                                           # the best run with a model
    python predict.py results/smoke clips/ --format csv > predictions.csv

Clips are read as the model's training clips were, whatever its dataset: mono (channels averaged), resampled to
the model's sample rate, cropped to their first clip length (5 s for ESC-50, the run's clip_seconds) or padded to
it (the run's pad_mode, zeros by default); one line on stderr counts the clips downmixed, padded or cropped.
The model file is checked first (weights against the architecture its config builds, classes, statistics) and
so is the device. A clip that cannot be classified (no such file, not audio, no samples, samples that are no
finite numbers) is named on stderr, one line each, and skipped; the others are predicted. Exit status: 0 when
every clip was predicted, 1 when some were not, 2 when the input was refused (model, device, options).

Output (stdout), one clip after the other as they are predicted:
  text  CLIP: CLASS PROB, CLASS PROB, ...  (the default)
  json  JSON lines, one object per clip: {"clip": PATH, "top": [{"class": NAME, "probability": P}, ...]}, or
        {"clip": PATH, "error": PROBLEM} for a clip that was skipped
  csv   a header, then one row per clip and rank: clip,rank,class,probability,error (rank 1 is the most
        probable); a skipped clip is one row with only clip and error
From a notebook: ``audiosweep.inference.load_predictor(path).predict([clip, ...])`` (or ``.top_k``, which refuses
a batch with a bad clip).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
FORMATS = ("text", "json", "csv")
CSV_COLUMNS = ["clip", "rank", "class", "probability", "error"]


def build_parser() -> argparse.ArgumentParser:
    from audiosweep.cli_flags import ArgumentParser

    p = ArgumentParser(prog="predict.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RECORD_OR_RUN_DIR", help="a run's record (<run_id>.json) or a folder of runs")
    p.add_argument("clips", metavar="CLIP", nargs="+", help="audio files, or folders of them")
    p.add_argument("--top_k", type=int, default=5, metavar="K", help="classes shown per clip (default: 5)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default), json (JSON lines) or csv")
    return p


def clip_paths(items: list[str]) -> list[Path]:
    """The clips named, and the audio files in the folders named."""
    from audiosweep.inference import PredictError

    paths = []
    for item in map(Path, items):
        try:
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) if item.is_dir() \
                else [item]
        except OSError as e:
            raise PredictError(f"{item}: cannot list the folder ({e.strerror or e})") from e
    return paths


class Writer:
    """Writes each Prediction to stdout in one of :data:`FORMATS`."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.csv = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(CSV_COLUMNS)

    def write(self, p) -> None:
        if self.fmt == "text":
            if p.top is not None:
                print(f"{p.clip}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in p.top))
        elif self.fmt == "json":
            record = {"clip": str(p.clip)}
            record.update({"error": p.error} if p.top is None else
                          {"top": [{"class": name, "probability": round(prob, 6)} for name, prob in p.top]})
            print(json.dumps(record))
        elif p.top is None:
            self.csv.writerow([p.clip, "", "", "", p.error])
        else:
            self.csv.writerows([p.clip, rank, name, round(prob, 6), ""] for rank, (name, prob) in
                               enumerate(p.top, 1))


def changes_line(changes: Counter, seconds: float, pad_mode: str) -> str | None:
    """One line counting the clips whose reading changed them, or None."""
    parts = [f"{changes['downmixed']} downmixed to mono"] if changes["downmixed"] else []
    parts += [f"{changes['padded']} shorter than {seconds:g} s padded ({pad_mode})"] if changes["padded"] else []
    parts += [f"{changes['cropped']} longer than {seconds:g} s cropped to their first {seconds:g} s"
              ] if changes["cropped"] else []
    return f"clips read as the model's training clips were: {'; '.join(parts)}" if parts else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audiosweep.errors import EXIT_FAILED, EXIT_OK, AudiosweepError, refuse, signal_exit
    from audiosweep.inference import PredictError, load_predictor

    try:
        if args.top_k < 1:
            raise PredictError(f"--top_k: give the number of classes to show per clip, at least 1 (got {args.top_k})")
        predictor = load_predictor(args.source, args.device)
        paths = clip_paths(args.clips)
        if not paths:
            raise PredictError(f"no audio files in {', '.join(args.clips)}")
    except AudiosweepError as e:
        return refuse("predict.py", e)
    failed, changes = 0, Counter()
    try:
        writer = Writer(args.format)
        for p in predictor.predict(paths, args.top_k):
            if p.error is not None:
                failed += 1
                print(f"predict.py: {p.clip}: {p.error}", file=sys.stderr, flush=True)
            changes.update(p.changes)
            writer.write(p)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (``| head``): nothing more to predict. As Python's docs advise, stdout goes to devnull
        # so that the interpreter's own flush at exit fails no more; the status is a SIGPIPE death's, as shells
        # report it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return signal_exit(signal.SIGPIPE)
    line = changes_line(changes, predictor.cfg.clip_length, predictor.cfg.pad_mode)
    if line:
        print(f"predict.py: {line}", file=sys.stderr)
    if failed:
        print(f"predict.py: {failed} of {len(paths)} clips not predicted (named above)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
