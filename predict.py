"""Classify audio clips with a model a run saved (``--save_model final`` or ``best``).

    python predict.py results/smoke/20260101-120000-abc123.json dog.wav rain.wav   # one run's model
    python predict.py results/smoke clips/                                           # the best run with a model

Clips are read as the dataset loader reads them: mono, resampled to the model's sample rate, 5 s long. The model
file is checked (weights against the architecture its config builds, classes, statistics) and so is every clip
(samples present and finite); one bad clip refuses the whole batch (exit 2), naming it.
From a notebook: ``audiosweep.inference.load_predictor(path).top_k([clip, ...])``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def build_parser() -> argparse.ArgumentParser:
    from audiosweep.cli_flags import ArgumentParser

    p = ArgumentParser(prog="predict.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RECORD_OR_RUN_DIR", help="a run's record (<run_id>.json) or a folder of runs")
    p.add_argument("clips", metavar="CLIP", nargs="+", help="audio files, or folders of them")
    p.add_argument("--top_k", type=int, default=5, metavar="K", help="classes shown per clip (default: 5)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audiosweep.errors import AudiosweepError, refuse
    from audiosweep.inference import PredictError, load_predictor

    try:
        if args.top_k < 1:
            raise PredictError(f"--top_k: give the number of classes to show per clip, at least 1 (got {args.top_k})")
        predictor = load_predictor(args.source, args.device)
        paths = clip_paths(args.clips)
        if not paths:
            raise PredictError(f"no audio files in {', '.join(args.clips)}")
        ranked = predictor.top_k(paths, args.top_k)
    except AudiosweepError as e:
        return refuse("predict.py", e)
    for path, classes in zip(paths, ranked, strict=True):
        print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
