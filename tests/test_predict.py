"""predict.py: output formats, bad clips named and skipped, one length rule for every dataset, device errors, a
closed pipe."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import predict
import train
from audiosweep import inference
from audiosweep.inference import load_predictor
from audiosweep.results import RunFiles
from audiosweep.synthetic import class_clip, make_synthetic_esc50
from tests.conftest import REPO, TINY, read_records

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

RATE = 44100


@pytest.fixture(scope="module")
def models(tmp_path_factory, cache_dir):
    """The record of a 1-epoch model of each kind of dataset: esc10 (strict: every clip 5 s mono; 1 clip per
    class and fold) and folder (clips of any length)."""
    out = tmp_path_factory.mktemp("predict")
    esc50 = make_synthetic_esc50(out / "ESC-50", per_class_per_fold=1)
    folder = out / "clips"
    rng = np.random.default_rng(0)
    for c in range(3):
        (folder / f"c{c}").mkdir(parents=True)
        for i in range(4):
            sf.write(folder / f"c{c}" / f"{i}.wav", class_clip(c, rng)[:RATE * (3 + i % 3)], RATE)

    def run(name, *data):
        argv = [*data, "--cache_dir", str(cache_dir), "--results_dir", str(out / name), *TINY, "--n_epochs", "1",
                "--split", "stratified", "--save_model", "final"]
        assert train.main(argv) == 0
        (rec,) = read_records(out / name)
        return str(RunFiles.of(out / name, rec["run_id"]).record)

    return {"esc10": run("esc10", "--data_dir", str(esc50), "--allow_missing", "true", "--esc10", "true"),
            "folder": run("folder", "--dataset", "folder", "--data_dir", str(folder))}


@pytest.fixture
def clips(tmp_path):
    """A good 5 s clip and its variants: 3 s, 10 s, stereo; and clips that cannot be classified."""
    wav = class_clip(0, np.random.default_rng(1))
    paths = {name: tmp_path / f"{name}.wav" for name in ("good", "short", "long", "stereo", "empty", "nan", "bad")}
    sf.write(paths["good"], wav, RATE)
    sf.write(paths["short"], wav[:RATE * 3], RATE)
    sf.write(paths["long"], np.concatenate([wav, wav[::-1]]), RATE)
    sf.write(paths["stereo"], np.stack([wav, wav], axis=1), RATE)
    sf.write(paths["empty"], np.zeros(0, np.float32), RATE)
    sf.write(paths["nan"], np.where(np.arange(len(wav)) == 7, np.nan, wav), RATE, subtype="DOUBLE")
    paths["bad"].write_bytes(b"not audio")
    paths["missing"] = tmp_path / "missing.wav"
    paths["dangling"] = tmp_path / "dangling.wav"
    paths["dangling"].symlink_to(tmp_path / "gone.wav")
    return paths


def test_a_missing_clip_says_no_such_file_and_the_os_reason_is_kept(models, clips, monkeypatch, capsys):
    for name in ("missing", "dangling"):
        assert predict.main([models["esc10"], str(clips[name])]) == 1
        assert f"predict.py: {clips[name]}: no such file\n" in capsys.readouterr().err

    def denied(*_args, **_kwargs):  # as the OS answers a clip without read permission (we test as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(inference, "open", denied, raising=False)
    assert predict.main([models["esc10"], str(clips["good"])]) == 1
    err = capsys.readouterr().err
    assert f"{clips['good']}: cannot open the clip (Permission denied)" in err and "System error" not in err


def test_bad_clips_are_named_one_line_each_and_skipped(models, clips, capsys):
    bad = ["missing", "bad", "empty", "nan"]
    args = [str(clips[n]) for n in ["good", *bad, "short"]]
    assert predict.main([models["esc10"], *args, "--top-k", "2"]) == 1
    out, err = capsys.readouterr()
    assert [line.split(": ")[0] for line in out.splitlines()] == [args[0], args[-1]]
    lines = err.splitlines()
    for name, says in zip(bad, ["no such file", "cannot read the clip as audio", "the clip has no samples",
                                "1 of the clip's 220500 samples are not finite"], strict=True):
        assert sum(line.startswith(f"predict.py: {clips[name]}: {says}") for line in lines) == 1
    assert lines[-1] == "predict.py: 4 of 6 clips not predicted (named above)" and "Traceback" not in err
    assert predict.main([models["esc10"], str(clips["good"])]) == 0  # 0 only when every clip was predicted


@pytest.mark.parametrize("dataset", ["esc10", "folder"])
def test_one_length_rule_for_every_dataset(models, clips, capsys, dataset):
    """Whatever the model's dataset, a short clip is zero-padded, a long one cropped to its first 5 s and a stereo
    one downmixed, as the training clips of a variable dataset are, with one line saying so."""
    predictor = load_predictor(models[dataset])
    good = predictor.read(clips["good"])[0]
    wav, changes = predictor.read(clips["short"])
    n = int(predictor.cfg.sample_rate * 3)
    assert changes == ["padded"] and wav[n + 100:].abs().max() < 1e-4  # silence after the clip
    assert torch.allclose(wav[:n - 100], good[:n - 100], atol=1e-3)  # (resampling's edge aside)
    (long, long_changes), (stereo, stereo_changes) = predictor.read(clips["long"]), predictor.read(clips["stereo"])
    assert long_changes == ["cropped"] and torch.equal(long, good)  # cropped before resampling, as in training
    assert stereo_changes == ["downmixed"] and torch.allclose(stereo, good, atol=1e-6)
    assert predict.main([models[dataset], *(str(clips[n]) for n in ("good", "short", "long", "stereo"))]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4
    assert err == ("predict.py: clips read as the model's training clips were: 1 downmixed to mono; 1 shorter than "
                   "5 s padded (zeros); 1 longer than 5 s cropped to their first 5 s\n")


def test_json_and_csv_output_parse_with_the_standard_modules(models, clips, capsys):
    args = [models["esc10"], str(clips["good"]), str(clips["missing"]), str(clips["short"]), "--top-k", "3"]
    assert predict.main(args) == 1
    text = capsys.readouterr().out.splitlines()
    assert predict.main([*args, "--format", "json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["clip"] for r in rows] == [str(clips[n]) for n in ("good", "missing", "short")]
    assert rows[1] == {"clip": str(clips["missing"]), "error": "no such file"}
    for row, line in zip([rows[0], rows[2]], text, strict=True):
        assert len(row["top"]) == 3 and row["top"][0]["probability"] >= row["top"][1]["probability"]
        assert line == f"{row['clip']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
    assert predict.main([*args, "--format", "csv"]) == 1
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["clip"], r["rank"]) for r in table] == [(str(clips["good"]), "1"), (str(clips["good"]), "2"),
                                                       (str(clips["good"]), "3"), (str(clips["missing"]), ""),
                                                       (str(clips["short"]), "1"), (str(clips["short"]), "2"),
                                                       (str(clips["short"]), "3")]
    assert table[3]["error"] == "no such file" and table[0]["error"] == ""
    assert [(r["class"], float(r["probability"])) for r in table[4:]] == \
        [(t["class"], t["probability"]) for t in rows[2]["top"]]


@pytest.mark.parametrize(("device", "gpus", "says"), [
    ("cuda", 0, "device cuda: no CUDA GPU is visible (here: cpu); use --device cpu"),
    ("cuda:3", 1, "device cuda:3: only 1 CUDA GPU(s) are visible (cuda:0); give one of them"),
    ("mps", 0, "device mps: no Apple MPS device here (here: cpu); use --device cpu"),
    ("foo", 0, "device foo: not a device; give auto, cpu, cuda, cuda:N or mps (here: cpu)"),
])
def test_a_device_this_machine_lacks_is_named_before_the_model_is_read(tmp_path, monkeypatch, capsys, device, gpus,
                                                                        says):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert predict.main([str(tmp_path / "no-such-record.json"), "clip.wav", "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"predict.py: {says}"]


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(models, clips, tmp_path):
    """``predict.py ... | head -1``: more output than a pipe holds (64 KiB on Linux), the reader gone after one
    line."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(64):  # x 10 rows of about 180 bytes: 115 KB
        (folder / f"{'a-long-clip-name-' * 8}{i:03d}.wav").symlink_to(clips["good"])
    proc = subprocess.Popen([sys.executable, "predict.py", models["esc10"], str(folder), "--top-k", "10", "--format",
                             "csv"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline() == ",".join(predict.CSV_COLUMNS) + "\n"
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == ""  # 128 + SIGPIPE, as a shell reports a writer that died of it
