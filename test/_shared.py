"""Where the shared third-party data is: ``../shared`` beside the repository, or ``$MUON_AD_SHARED``.

A newcomer's clone has no ../shared; every test that needs data generates it (bags written from
scikit-image frames, curriculum data from scikit-image photos) and only tests of the real
third-party recordings skip. To check that, run the suite as such a clone does:

    MUON_AD_SHARED=/nonexistent .venv/bin/python -m pytest test/test_bag_eval.py
"""
import os
from pathlib import Path

SHARED = Path(os.environ.get("MUON_AD_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
DATA = SHARED / "data"
