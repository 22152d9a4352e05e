"""Deep ensembles from records (analysis.ensemble): predictions written by the test, numbers recomputed here."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import ensemble, report, runs
from audiosweep.results import RunFiles, save_predictions
from tests.analysis_records import CLASSES, is_png, write_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TARGETS = np.array([0, 1, 2, 0, 1, 2])
NAMES = [f"{i}.wav" for i in range(6)]


def member(folder: Path, run_id: str, probs: np.ndarray, targets=TARGETS, names=NAMES, tta: bool = False,
           **config) -> np.ndarray:
    """A finished run whose predictions are ``probs``."""
    write_run(folder, run_id, 0.5, **config)
    files = RunFiles.of(folder, run_id)
    save_predictions(files.tta_preds if tta else files.preds, np.asarray(probs), np.asarray(targets), CLASSES,
                     list(names))
    return np.asarray(probs, dtype=np.float32)


def wrong_on(clips: list[int]) -> np.ndarray:
    """Right with 0.6 everywhere but ``clips``, where the next class gets 0.5 and the right one 0.3."""
    probs = np.full((6, 3), 0.2)
    probs[np.arange(6), TARGETS] = 0.6
    for c in clips:
        probs[c] = 0.2
        probs[c, TARGETS[c]], probs[c, (TARGETS[c] + 1) % 3] = 0.3, 0.5
    return probs


def three_trials(folder: Path, **config) -> list[np.ndarray]:
    """Trials 1..3, each wrong on two other clips (4/6 right); their average is right on all six."""
    return [member(folder, f"{config.get('fold', 1)}-t{t}", wrong_on([2 * t - 2, 2 * t - 1]), trial_num=t, **config)
            for t in (1, 2, 3)]


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = ensemble.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_ensemble_beats_every_member_and_matches_numpy(tmp_path, capsys):
    probs = three_trials(tmp_path)
    code, out, err = cli([tmp_path, "--over", "trial_num", "--format", "csv"], capsys)
    assert code == 0, err
    row = csv(out).iloc[0]
    singles = [float((p.argmax(1) == TARGETS).mean()) for p in probs]
    expected = float((np.mean(probs, axis=0).argmax(1) == TARGETS).mean())
    assert singles == pytest.approx([4 / 6] * 3) and expected == 1.0 > max(singles)
    assert (row.members, row.ensemble, row.single_mean, row.single_std) == (3, pytest.approx(expected),
                                                                            pytest.approx(4 / 6), pytest.approx(0))
    assert row.gain == pytest.approx(1 - 4 / 6) and row.run_ids == "1-t1 1-t2 1-t3" and row.fold == 1

    rng = np.random.default_rng(1)  # random softmax outputs: the same numbers as numpy's
    names = [f"{i}.wav" for i in range(40)]
    targets = rng.integers(0, 3, 40)
    probs = [member(tmp_path / "r", f"r{t}", rng.dirichlet(np.ones(3), 40), targets, names, trial_num=t)
             for t in range(1, 6)]
    row = csv(cli([tmp_path / "r", "--over", "trial_num", "--format", "csv"], capsys)[1]).iloc[0]
    singles = np.array([(p.argmax(1) == targets).mean() for p in probs])
    assert row.ensemble == pytest.approx((np.mean(probs, axis=0).argmax(1) == targets).mean())
    assert (row.single_mean, row.single_std) == (pytest.approx(singles.mean()), pytest.approx(singles.std(ddof=1)))
    sizes = csv(cli([tmp_path / "r", "--over", "trial_num", "--sizes", "--format", "csv"], capsys)[1]).set_index("k")
    assert sizes.loc[1, "mean"] == pytest.approx(row.single_mean)
    assert sizes.loc[1, "std"] == pytest.approx(row.single_std)
    assert sizes.loc[5, "mean"] == pytest.approx(row.ensemble) and sizes.subsets.tolist()[1] == "all 10"


def test_other_clips_are_refused_and_reordered_rows_realigned(tmp_path, capsys):
    probs = three_trials(tmp_path, n_mels=128)
    other = NAMES[:5] + ["elsewhere.wav"]
    member(tmp_path, "odd-1", wrong_on([0]), trial_num=1, n_mels=64)
    member(tmp_path, "odd-2", wrong_on([1]), names=other, trial_num=2, n_mels=64)
    code, out, err = cli([tmp_path, "--over", "trial_num", "--format", "csv"], capsys)
    assert code == 1
    assert "error: n_mels=64 fold=1: not averaged, validation sets differ: odd-2 (6 clips) vs odd-1 (6 clips): " \
           "1 only in odd-2 (elsewhere.wav); 1 only in odd-1 (5.wav)" in err
    assert csv(out).n_mels.tolist() == [128]  # the other group is still averaged, the refused one is not

    # the same predictions with rows in another order: realigned by clip name, the same numbers
    order = [5, 3, 1, 0, 2, 4]
    for t, p in enumerate(probs, 1):
        member(tmp_path / "shuffled", f"s{t}", p[order] if t == 2 else p, TARGETS[order] if t == 2 else TARGETS,
               [NAMES[i] for i in order] if t == 2 else NAMES, trial_num=t)
    code, out, _ = cli([tmp_path / "shuffled", "--over", "trial_num", "--format", "csv"], capsys)
    assert code == 0 and csv(out).ensemble.tolist() == [1.0]

    member(tmp_path / "labels", "l1", probs[0], trial_num=1)
    member(tmp_path / "labels", "l2", probs[1], targets=TARGETS[::-1], trial_num=2)
    code, out, err = cli([tmp_path / "labels", "--over", "trial_num"], capsys)
    assert code == 2 and "l2 vs l1: labels differ for 4 clips" in err and "every group was refused" in err


def test_folds_over_arch_and_sizes(tmp_path, capsys):
    three_trials(tmp_path, fold=1)
    for t, clips in enumerate([[0], [0, 1], [0]], 1):  # fold 2: 5/6, 4/6, 5/6; the ensemble wrong on clip 0: 5/6
        member(tmp_path, f"2-t{t}", wrong_on(clips), fold=2, trial_num=t)
    code, out, err = cli([tmp_path, "--over", "trial_num", "--folds", "--format", "csv"], capsys)
    assert code == 0, err
    table = csv(out)
    assert table.fold.tolist() == ["1", "2", ensemble.FOLD_MEAN]
    assert table.ensemble.tolist() == pytest.approx([1, 5 / 6, (1 + 5 / 6) / 2])
    assert table.ensemble_std.iloc[2] == pytest.approx(np.std([1, 5 / 6], ddof=1))
    assert table.single_mean.iloc[2] == pytest.approx((4 / 6 + 7 / 9) / 2) and table.members.iloc[2] == 2

    code, out, _ = cli([tmp_path, "--over", "trial_num", "--sizes", "--format", "csv"], capsys)
    sizes = csv(out)
    fold1 = sizes[sizes.fold == 1].set_index("k")
    assert fold1.subsets.tolist() == ["all 3", "all 3", "all 1"]
    assert fold1.loc[1, "mean"] == pytest.approx(4 / 6) and fold1.loc[3, "mean"] == pytest.approx(1)
    code, out, _ = cli([tmp_path, "--over", "trial_num", "--folds", "--format", "markdown", "--out",
                        tmp_path / "out"], capsys)
    assert code == 0 and "| mean over folds |" in out and "Ensemble accuracy by size k" in out
    assert "91.67 ± 11.79" in out  # the ensembles' mean ± std over folds, in %
    assert is_png(tmp_path / "out" / "ensemble_sizes.png", 5) and (tmp_path / "out" / "ensemble_sizes.svg").is_file()
    assert pd.read_csv(tmp_path / "out" / "ensemble_sizes.csv")["mean"].iloc[-1] == pytest.approx((1 + 5 / 6) / 2)

    cross = tmp_path / "cross"  # one ensemble of two architectures x trials
    for arch, t, clips in (("resnet18", 1, [0, 1]), ("resnet18", 2, [2, 3]), ("densenet121", 1, [4, 5])):
        member(cross, f"{arch}-{t}", wrong_on(clips), arch=arch, trial_num=t)
    code, out, _ = cli([cross, "--over", "arch,trial_num", "--format", "csv"], capsys)
    assert csv(out).members.tolist() == [3] and csv(out).ensemble.tolist() == [1.0]
    code, out, err = cli([cross, "--over", "trial_num", "--by", "arch", "--format", "csv"], capsys)
    assert csv(out).arch.tolist() == ["resnet18"] and "1 group(s) with fewer than 2 runs" in err


def test_many_members_sample_orderings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for t in range(1, 13):  # 12 choose 6 = 924 subsets: sampled
        member(tmp_path, f"t{t}", rng.dirichlet(np.ones(3), 6), trial_num=t)
    code, out, _ = cli([tmp_path, "--over", "trial_num", "--sizes", "--format", "csv"], capsys)
    sizes = csv(out).set_index("k")
    assert sizes.loc[1, "subsets"] == "all 12" and sizes.loc[6, "subsets"] == "200 random"
    assert sizes.loc[12, "subsets"] == "all 1"


def test_missing_predictions_tta_and_bad_input(tmp_path, capsys):
    three_trials(tmp_path)
    write_run(tmp_path, "no-preds", 0.9, trial_num=4)
    code, out, err = cli([tmp_path, "--over", "trial_num"], capsys)
    assert code == 0 and "1 finished run(s) left out, no <run_id>.preds.npz beside the record: no-preds" in err
    assert "single % (mean ± std)" in out and "66.67 ± 0.00" in out and "+33.33" in out

    code, out, err = cli([tmp_path, "--over", "trial_num", "--tta"], capsys)
    assert code == 2 and "no <run_id>.tta.preds.npz" in err and "no group of two or more runs" in err
    for t in (1, 2):
        member(tmp_path, f"1-t{t}", wrong_on([t]), tta=True, trial_num=t)
    code, out, err = cli([tmp_path, "--over", "trial_num", "--tta", "--format", "csv"], capsys)
    assert code == 0 and csv(out).run_ids.tolist() == ["1-t1 1-t2"]

    for args, message in ((["--over", "trail_num"], "--over: "),
                          (["--over", "fold"], "--over fold: runs of different folds"),
                          (["--over", "trial_num", "--by", "trial_num"], "trial_num: in both --over and --by"),
                          (["--over", "trial_num", "--metric", "best_accuracy"], "--metric best_accuracy")):
        code, out, err = cli([tmp_path, *args], capsys)
        assert code == 2 and err.startswith(f"analysis.ensemble: {message}") and "Traceback" not in err and not out
    code, _, err = cli([tmp_path, "--over", "trail_num"], capsys)
    assert "trial_num" in err and len(err.strip().splitlines()) == 1


def test_report_has_an_ensemble_section_only_when_there_are_ensembles(tmp_path):
    three_trials(tmp_path / "study")
    page = report.build_report(runs.load_runs(str(tmp_path / "study")), tmp_path / "r")
    text = page.read_text()
    assert "## Ensembles over trial_num" in text
    assert "![ensemble accuracy by ensemble size](ensemble_sizes_study.png)" in text
    assert text.index("## Ensembles over trial_num") < text.index("## Confusion matrix")
    assert "| 3 |" in text and "100.00" in text and is_png(tmp_path / "r" / "ensemble_sizes_study.png", 5)
    assert pd.read_csv(tmp_path / "r" / "ensembles.csv").ensemble.tolist() == [1.0]

    write_run(tmp_path / "single", "only", 0.8, preds=True)  # one run: no ensemble, no section
    text = report.build_report(runs.load_runs(str(tmp_path / "single")), tmp_path / "r2").read_text()
    assert "Ensembles" not in text and not (tmp_path / "r2" / "ensemble_sizes_single.png").exists()


def test_test_predictions_ensemble_within_a_test_fold_and_never_across(tmp_path):
    folder = tmp_path / "rot"
    for test_fold in (1, 2):  # test accuracies 0.6, 0.7, 0.8 of 10 clips: the majority gets 0.7 right
        for trial, acc in enumerate([0.6, 0.7, 0.8], 1):
            write_run(folder, f"t{test_fold}-{trial}", 0.9, preds=True, test_fold=test_fold, trial_num=trial,
                      test_acc=acc)
    result = ensemble.analyse(runs.load_runs(str(folder)), ["trial_num"], test=True)
    assert not result.refused and len(result.ensembles) == 2 and result.cols == ["test_fold"]
    for e in result.ensembles:
        assert {r.split("-")[0] for r in e.run_ids} == {f"t{e.values['test_fold']}"}
        assert e.singles().tolist() == pytest.approx([0.6, 0.7, 0.8]) and e.accuracy() == pytest.approx(0.7)
        assert all(m.filenames[0] == "test0.wav" for m in e.members)
    plain = ensemble.analyse(runs.load_runs(str(folder)), ["trial_num"])  # the validation predictions as before
    assert [e.accuracy() for e in plain.ensembles] == pytest.approx([11 / 12] * 2)
