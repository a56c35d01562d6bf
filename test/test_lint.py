"""flake8 over the package, the training code, launch files, benchmarks and tests (as ament_flake8 would)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("flake8") is None and not (Path(sys.executable).parent / "flake8").exists(),
                    reason="flake8 is not installed (it is in the test extra)")
def test_flake8_clean():
    proc = subprocess.run([sys.executable, "-m", "flake8", "muon_ad_ros", "training", "launch", "bench", "test",
                           "setup.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
