"""A training run SIGKILLed after a checkpoint (no finally, no atexit: as a power cut or the OOM
killer) resumes with --resume and ends with exactly the weights of an uninterrupted run: nothing
lost, nothing half-written taken for a checkpoint (training/checkpointing.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _training_helpers import SMOKE, need_teacher, smoke_overrides

STEPS = (3, 4, 5)       # 12 steps through all three phases; a checkpoint every 3
pytestmark = pytest.mark.timeout(2700)


def write_config(out: Path, cache: Path) -> Path:
    over = smoke_overrides(out, cache, STEPS, logging={"progress": False, "checkpoint_every": 3,
                                                       "tensorboard": False, "keep_checkpoints": 2},
                           export={"enabled": False})
    path = out.parent / f"{out.name}.yaml"
    path.write_text(json.dumps({"extends": str(SMOKE), **over}))   # JSON is YAML
    return path


def train(config: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "muon_ad_training.cli", "--config", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen) -> str:
    """Wait for a run (minutes on a loaded CPU); never leave it running behind a failed test."""
    try:
        return proc.communicate(timeout=800)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def final_weights(out: Path) -> dict:
    from safetensors.torch import load_file

    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step_{sum(STEPS):08d}", latest
    return load_file(str(out / "checkpoints" / latest / "student.safetensors"))


def test_sigkill_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path):
    need_teacher()
    cache = tmp_path / "targets"
    straight = tmp_path / "straight"
    proc = train(write_config(straight, cache))
    log = finish(proc)
    assert proc.returncode == 0, log[-3000:]              # also fills the shared target cache

    killed = tmp_path / "killed"
    config = write_config(killed, cache)
    proc = train(config)
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 800
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)                  # right after the first checkpoint
    finish(proc)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    step = json.loads((killed / "checkpoints" / latest.read_text().strip() / "trainer.json").read_text())["step"]
    assert 0 < step < sum(STEPS)

    proc = train(config, "--resume")
    log = finish(proc)
    assert proc.returncode == 0, log[-3000:]
    a, b = final_weights(straight), final_weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not list((killed / "checkpoints").glob(".*.tmp"))   # a partial checkpoint does not survive
