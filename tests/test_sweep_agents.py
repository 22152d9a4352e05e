"""W&B agents: one per GPU, pinned with CUDA_VISIBLE_DEVICES, Ctrl-C passed on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from audiosweep.sweep.cli import main
from tests.conftest import REPO


def test_agents_dry_run_prints_one_command_per_gpu(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["agents", "me/esc50/abc123", "--gpus", "8", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"CUDA_VISIBLE_DEVICES={i} \S*wandb agent me/esc50/abc123 > "
                            rf"results/agent-logs/me_esc50_abc123/gpu{i}\.log 2>&1", line)
    assert main(["agents", "abc123", "--gpus", "0,2,5", "--count", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"CUDA_VISIBLE_DEVICES=(\d)", out) == ["0", "2", "5"] and out.count("agent --count 3") == 3
    assert main(["agents", "abc123", "--dry-run"]) == 2  # no GPU visible
    assert main(["agents", "not a sweep", "--gpus", "2", "--dry-run"]) == 2
    assert "not a W&B sweep id" in capsys.readouterr().err


def test_agents_get_their_gpu_and_ctrl_c(tmp_path):
    fake = tmp_path / "fake_wandb.py"
    fake.write_text("import os, signal, sys, time\n"
                    "def stop(*_):\n    print('stopping on GPU', os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
                    "    sys.exit(0)\n"
                    "signal.signal(signal.SIGINT, stop)\nprint('started', sys.argv[1:], flush=True)\n"
                    "time.sleep(60)\n")
    code = ("import sys, audiosweep.sweep.agents as a\n"
            f"a.wandb_executable = lambda: [sys.executable, {str(fake)!r}]\n"
            "from audiosweep.sweep.cli import main\n"
            f"sys.exit(main(['agents', 'abc123', '--gpus', '3,7', '--log-dir', {str(tmp_path / 'logs')!r}]))\n")
    # agents need a W&B API key (the fake wandb never uses it)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "3,7", "WANDB_API_KEY": "x" * 40})
    logs = [tmp_path / "logs" / f"gpu{g}.log" for g in (3, 7)]
    deadline = time.time() + 60
    while not all(p.is_file() and "started" in p.read_text() for p in logs) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, out
    for gpu, log in zip((3, 7), logs, strict=True):
        text = log.read_text()
        assert "started ['agent', 'abc123']" in text and f"stopping on GPU {gpu}" in text
