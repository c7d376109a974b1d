"""examples/python/longrope2_search.py: one process, two processes (torch.distributed, gloo) and
a stopped-then-resumed run end with the same result (short budget)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")
ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "python" / "longrope2_search.py"
ARGS = ["--evaluations", "32", "--seed", "1", "--length", "300", "--documents", "1"]


def run(args, tmp_path, name, nproc=1, check=True):
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, str(SCRIPT), *ARGS, "--json", str(out), *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--redirects", "2", "--tee", "2", "--master_port", str(29500 + os.getpid() % 1000),
               *cmd[1:]]
    done = subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=240)
    if not check:
        return done
    return json.loads(out.read_text()) if out.exists() else None


def test_one_two_processes_and_resume_agree(tmp_path):
    one = run([], tmp_path, "one")
    assert one["processes"] == 1 and one["evaluations"] == 32
    assert len(one["factors"]) == 16 and one["best_loss"] > 1.0
    two = run([], tmp_path, "two", nproc=2)
    assert two["processes"] == 2
    for key in ("best_loss", "critical_pair", "factors", "evaluations"):
        assert two[key] == one[key], key
    ckpt = tmp_path / "ckpt.json"
    assert run(["--checkpoint", str(ckpt), "--stop-after", "1"], tmp_path, "stopped") is None
    assert json.loads(ckpt.read_text())["history"]
    resumed = run(["--resume", str(ckpt)], tmp_path, "resumed")
    for key in ("best_loss", "critical_pair", "factors", "evaluations"):
        assert resumed[key] == one[key], key


def test_a_failing_rank_stops_the_job_with_its_error(tmp_path):
    ckpt = tmp_path / "ckpt.json"
    # rank 1 fails in the second batch (ids >= 16); the checkpoint of the first stays valid
    done = run(["--checkpoint", str(ckpt), "--fail-rank-at", "1:16"], tmp_path, "failed",
               nproc=2, check=False)
    assert done.returncode != 0
    assert "rank 1: RuntimeError: injected failure at candidate" in done.stdout + done.stderr
    assert not (tmp_path / "failed.json").exists()
    state = json.loads(ckpt.read_text())
    assert state["version"] == 1 and len(state["history"]) == 16
