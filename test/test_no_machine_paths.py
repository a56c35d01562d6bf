"""No tracked file names a path of one machine (issue 14 item 11): no absolute interpreter path in
a bench script or its recorded command, no absolute data path in a model card or a doc. A user's
checkout has none of these; commands are written relative to the repository (python bench/x.py),
scripts use sys.executable, cards record data paths relative to their data root."""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a path starting at the root in work, root, home, tmp or Users (not inside a URL or a relative path)
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp|Users)/")


def tracked_text_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    for name in filter(None, out.decode().split("\0")):
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 20 * 2**20:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:                 # binary (ONNX, PNG, safetensors)
            continue
        yield name, data.decode("utf-8", errors="replace")


def machine_paths(text: str) -> list[str]:
    """The lines of ``text`` that hold a machine-specific absolute path."""
    own = [str(REPO), str(REPO.parent)] if len(REPO.parent.parts) > 1 else [str(REPO)]
    return [line.strip()[:160] for line in text.splitlines()
            if ABSOLUTE.search(line) or any(p + "/" in line for p in own)]


def test_the_pattern_finds_what_it_should():
    root = "/"   # the samples are assembled so that this file holds no such path itself
    assert machine_paths(f'"command": "{root}work/venv/bin/python bench/x.py"')
    assert machine_paths(f"data: {REPO}/config/../shared/data/a.jpg")
    assert machine_paths(f"out = Path('{root}tmp/transport.json')")
    assert not machine_paths("python bench/x.py; see https://example.com/home/page and ../shared/data")
    assert not machine_paths("muon-ad eval-bag run.mcap --out out/x; ~/.cache/muon_ad_ros")


def test_no_tracked_file_names_a_machine_specific_path():
    found = {name: hits for name, text in tracked_text_files() if (hits := machine_paths(text))}
    assert not found, "machine-specific paths in tracked files:\n" + "\n".join(
        f"  {name}: {hits[0]}" + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else "") for name, hits in found.items())


def test_the_card_writer_records_data_paths_relative_to_the_data_root(tmp_path):
    export = pytest.importorskip("muon_ad_training.export", reason="the training package is not installed")
    config_dir = tmp_path / "repo" / "config" / "train"
    names = [str(config_dir / "../../../shared/data/photos/a.jpg"), "skimage:coffee",
             str(tmp_path / "shared" / "data" / "video" / "v.avi") + "#15", "../../../shared/data/art/s.jpg"]
    root, relative = export.card_data_paths(names, config_dir)
    assert root == "../../../shared/data"
    assert relative == ["photos/a.jpg", "skimage:coffee", "video/v.avi#15", "art/s.jpg"]
    assert not any(machine_paths(p) for p in [root, *relative])
    assert export.card_data_paths(["skimage:astronaut"], config_dir) == (".", ["skimage:astronaut"])
