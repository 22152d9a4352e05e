"""Claims on a sweep's configurations: one runner at a time per configuration, stale claims of dead runners taken
over, other machines' claims left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from audiosweep.sweep.claims import HOST, Claims, process_start


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def plant(claims: Claims, cid: str, **holder) -> None:
    claims.dir.mkdir(parents=True, exist_ok=True)
    claims.path(cid).write_text(json.dumps({"host": HOST, "claimed": 0, "token": "t", **holder}))


def test_a_configuration_is_claimed_once_until_released(tmp_path):
    a, b = Claims(tmp_path), Claims(tmp_path)
    assert a.take("c1") and not b.take("c1") and not a.take("c1")  # nor twice by one runner
    assert b.take("c2") and a.claimed() == {"c1", "c2"}
    b.release("c1")  # not b's: stays
    assert a.claimed() == {"c1", "c2"}
    a.release("c1")
    assert b.take("c1") and not list(tmp_path.glob(".claims/.*.tmp"))
    holder = json.loads(a.path("c1").read_text())
    assert (holder["host"], holder["pid"], holder["start"]) == (HOST, os.getpid(), process_start(os.getpid()))


def test_a_dead_runners_claim_is_taken_over_a_live_or_remote_one_is_not(tmp_path, capsys):
    claims = Claims(tmp_path)
    gone = dead_pid()
    plant(claims, "dead", pid=gone, start="1")
    plant(claims, "reused", pid=os.getpid(), start="not this process")  # a later process got the pid
    plant(claims, "live", pid=os.getppid(), start=process_start(os.getppid()))
    plant(claims, "remote", pid=gone, host="another-machine")
    assert claims.take("dead") and claims.take("reused")
    assert not claims.take("live") and not claims.take("remote") and not claims.take("remote")
    out = capsys.readouterr().out
    assert f"claimed by runner pid {gone}, which ended; taken over" in out
    assert out.count("on another-machine") == 1 and f"delete {claims.path('remote')}" in out
