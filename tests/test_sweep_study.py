"""Optuna studies of local sweeps: hyperband as successive halving, journal and RDB storage (SQLite, a real
PostgreSQL server), and how a study is told a run's result."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

from audiosweep.results import Record
from audiosweep.sweep.cli import main
from audiosweep.sweep.spec import load_sweep
from audiosweep.sweep.study import open_study, pruner, sampler, tell_result
from tests.conftest import write_sweep
from tests.test_sweep_bayes import LR, three_runners, two_runners


@pytest.mark.parametrize(("et", "first", "eta"), [({"min_iter": 2}, 2, 3), ({"max_iter": 27, "s": 2, "eta": 3.0}, 3, 3),
                                                 ({"min_iter": 1, "eta": 2}, 1, 2)])
def test_hyperband_is_successive_halving_from_the_first_bracket(tmp_path, et, first, eta):
    sweep = load_sweep(write_sweep(tmp_path / "hb.yaml", {"learning_rate": LR}, method="bayes",
                                   early_terminate={"type": "hyperband", **et}))
    p = pruner(sweep)
    assert isinstance(p, optuna.pruners.SuccessiveHalvingPruner)
    assert (p._min_resource, p._reduction_factor, p._min_early_stopping_rate) == (first, eta, 0)


def test_the_sampler_draws_the_same_for_the_same_seed_and_lies_for_running_trials():
    def draws(seed: int) -> list[float]:
        study = optuna.create_study(sampler=sampler(seed))
        return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)]

    assert draws(1) == draws(1) != draws(2)
    assert isinstance(sampler(0), optuna.samplers.TPESampler) and sampler(0)._constant_liar


def test_a_study_learns_a_run_from_its_record(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "told.yaml", {"learning_rate": LR}, method="bayes"))
    study = open_study(sweep, tmp_path / "told", name="told:hyperband")
    done = {"run_id": "a", "status": "finished", "config": {}, "history": [], "summary": {"accuracy": 0.5}}
    for rec, interrupted in [(done, False), ({**done, "run_id": "b", "status": "stopped"}, False),
                             ({**done, "run_id": "c", "summary": {"accuracy": float("nan")}}, False), (None, True)]:
        tell_result(study, study.ask(), rec and Record(rec), "accuracy", interrupted)
    told = open_study(sweep, tmp_path / "told", name="told:hyperband").get_trials()  # from the journal file
    S = optuna.trial.TrialState
    assert [t.state for t in told] == [S.COMPLETE, S.PRUNED, S.FAIL, S.FAIL] and told[0].value == 0.5
    assert [t.user_attrs.get("record") for t in told] == ["a", "b", "c", None]
    assert [t.user_attrs.get("interrupted") for t in told] == [None, None, None, True]


def test_storage_url_holds_the_study(tmp_path, capsys):
    path = write_sweep(tmp_path / "db.yaml", {"learning_rate": LR}, method="bayes")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["run", str(path), "--count", "1", "--results-dir", str(tmp_path), "--storage", url,
                 "--dry-run"]) == 0
    assert (tmp_path / "study.db").is_file() and not (tmp_path / "db" / "optuna.journal").exists()
    assert f"on study db in {url}" in capsys.readouterr().out
    assert optuna.load_study(study_name="db", storage=url).direction == optuna.study.StudyDirection.MAXIMIZE


def _postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres():
    """The URL of a real PostgreSQL server started for these tests (Debian's package `postgresql`) on 127.0.0.1,
    in a throw-away data folder; stopped afterwards."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="audiosweep-pg-", dir="/tmp"))  # the server's user must reach it
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, log = root / "data", root / "server.log"
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True, timeout=120)
    run([*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"])
    run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-o",
         f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    try:
        yield f"postgresql://postgres:not-shown@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_a_postgresql_server_holds_the_study_and_its_password_stays_out_of_the_output(tmp_path, capsys, postgres):
    path = write_sweep(tmp_path / "pg.yaml", {"learning_rate": LR}, method="bayes")
    assert main(["run", str(path), "--count", "1", "--results-dir", str(tmp_path), "--storage", postgres,
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "on study pg in postgresql://postgres:***@127.0.0.1:" in out and "not-shown" not in out
    assert optuna.load_study(study_name="pg", storage=postgres).direction == optuna.study.StudyDirection.MAXIMIZE
    assert not (tmp_path / "pg" / "optuna.journal").exists()


def test_a_storage_that_cannot_be_opened_is_a_clear_error(tmp_path, capsys):
    path = write_sweep(tmp_path / "bad.yaml", {"learning_rate": LR}, method="bayes")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url, says in [(f"postgresql://me:secret@127.0.0.1:{port}/db", "Connection refused"),
                      ("nonsense", "Could not parse"), ("mysql://me:secret@127.0.0.1/db", "DB access module")]:
        assert main(["run", str(path), "--count", "1", "--results-dir", str(tmp_path), "--storage", url,
                     "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --storage ") and says in err and "secret" not in err, err


@pytest.mark.slow
def test_two_runners_share_one_postgresql_study_without_repeating_a_configuration(tmp_path, synth, postgres):
    recs = two_runners(tmp_path, synth, "pgtwo", 2, "--storage", postgres)
    done = optuna.load_study(study_name="pgtwo", storage=postgres).get_trials()
    assert len(done) == 4 and {t.state for t in done} == {optuna.trial.TrialState.COMPLETE}
    assert {t.user_attrs["record"] for t in done} == {r["run_id"] for r in recs}




@pytest.mark.slow
def test_three_runners_on_a_six_configuration_postgresql_study_run_each_configuration_once(tmp_path, postgres):
    recs, outs = three_runners(tmp_path, "pgsix", "--storage", postgres)
    assert len(recs) == 6 and len({r["config_id"] for r in recs}) == 6
    done = optuna.load_study(study_name="pgsix", storage=postgres).get_trials()
    # a free configuration enqueued after a repeat may still wait when the space runs out: the next ask takes it
    waiting = [t for t in done if t.state == optuna.trial.TrialState.WAITING]
    assert all("enqueued" in t.user_attrs for t in waiting)
    ran = [t for t in done if "repeats" not in t.user_attrs and t not in waiting]
    assert sorted(t.user_attrs["record"] for t in ran) == sorted(r["run_id"] for r in recs)
    assert len(done) <= 12, len(done)


@pytest.mark.parametrize("torn", [b"\xff\xfe garbage\n", b'{"op_code": 6, "trial_id": \n', b"[1, 2]\n",
                                  b'{"op_code": 4}\n'])
def test_a_torn_journal_line_is_skipped_with_one_warning_and_the_study_goes_on(tmp_path, capsys, torn):
    from optuna.storages.journal import JournalFileBackend

    sweep = load_sweep(write_sweep(tmp_path / "torn.yaml", {"learning_rate": LR}, method="bayes"))
    folder = tmp_path / "res" / "torn"
    study = open_study(sweep, folder)
    for value in (0.25, 0.5):
        study.tell(study.ask(), value)
    journal = folder / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    bad_line = len(lines)  # between the two trials' last operations and what comes next
    journal.write_bytes(b"".join(lines[:-1]) + torn + lines[-1] + b'{"op_code": 8, "worker_id": "x", "tri')
    with pytest.raises((ValueError, KeyError, TypeError)):  # Optuna's own reader: a traceback
        optuna.storages.JournalStorage(JournalFileBackend(str(journal))).get_all_studies()
    # Opening the study appends (create_study): that append ends the torn last line first, which becomes a bad
    # line of its own, and the new operation stays whole.
    again = open_study(sweep, folder)
    assert [t.value for t in again.get_trials()] == [0.25, 0.5]
    again.tell(again.ask(), 0.75)
    assert [t.value for t in open_study(sweep, folder).get_trials()] == [0.25, 0.5, 0.75]
    err = capsys.readouterr().err  # one warning per bad line, however often it is read
    assert err.count("unreadable Optuna journal line") == 2, err
    assert f"{journal}, line {bad_line}:" in err and f"{journal}, line {bad_line + 2}:" in err


def test_a_bayes_sweep_resumes_over_a_garbage_journal_line(tmp_path, capsys):
    (tmp_path / "ok.py").write_text("")
    path = write_sweep(tmp_path / "g.yaml", {"trial_num": {"values": [1, 2, 3]}}, method="bayes", program="ok.py")
    run = ["run", str(path), "--count", "1", "--results-dir", str(tmp_path / "res")]
    assert main(run) == 1  # ok.py writes no record: a failed trial
    with open(tmp_path / "res" / "g" / "optuna.journal", "ab") as f:
        f.write(b"\x00\x00\x00 not json\n")
    assert main(run) == 1
    out, err = capsys.readouterr()
    assert "1 fail before; 1 to run" in out and "Traceback" not in err
    assert "optuna.journal, line" in err
