"""eval-bag's output safety (issue 14 item 6): --overwrite replaces only a bag this tool wrote or a
single bag file, never another directory; partial folders of killed runs are cleaned up."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import _bag_helpers as H
from _core_helpers import real_photos, tiny_bundle
from muon_ad_ros.evaluation import bag_io, eval_bag_cli

TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


@pytest.fixture(scope="module")
def in_bag(tmp_path_factory):
    return H.write_bag(tmp_path_factory.mktemp("in") / "cam", real_photos((48, 64)) * 2, "mcap")


def run(in_bag, card, out, *extra):
    return eval_bag_cli.main([str(in_bag), "--topic", TOPIC, "--model", str(card), "--out", str(out),
                              "--no-progress", *map(str, extra)])


def one_line_error(capsys, fragment):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err, err


def test_a_bag_directory_it_wrote_is_replaced(in_bag, card, tmp_path):
    out = tmp_path / "stylized"
    assert run(in_bag, card, out, "--max-frames", 2) == 0
    assert (out / bag_io.OUTPUT_MARKER).is_file() and (out / "metadata.yaml").is_file()
    assert run(in_bag, card, out, "--max-frames", 3, "--overwrite") == 0
    with bag_io.BagReader(out) as bag:
        assert {t.name: t.count for t in bag.topics()}[TOPIC + "/stylized"] == 3


@pytest.mark.parametrize("make", ["plain dir", "home-like dir", "foreign rosbag2 dir", "text named .mcap",
                                  "symlink to a bag"])
def test_overwrite_refuses_anything_but_a_bag(in_bag, card, tmp_path, capsys, make):
    target = tmp_path / ("out.mcap" if "mcap" in make else "out")
    if make == "plain dir":
        target.mkdir()
        (target / "precious.txt").write_text("mine")
    elif make == "home-like dir":
        (target / ".ssh").mkdir(parents=True)
        (target / ".ssh" / "id_ed25519").write_text("key")
        (target / "metadata.yaml").write_text("looks like a bag\n")   # still not one we wrote
    elif make == "foreign rosbag2 dir":
        H.write_bag(target, real_photos((48, 64))[:1], "mcap")       # a user's own recording
    elif make == "text named .mcap":
        target.write_text("my notes")
    else:
        real = tmp_path / "real"
        assert run(in_bag, card, real, "--max-frames", 1) == 0
        target.symlink_to(real)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    rc = run(in_bag, card, target, "--overwrite", "--max-frames", 1)
    assert rc == 2
    one_line_error(capsys, "--overwrite replaces only")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before   # nothing deleted


def test_a_single_bag_file_is_replaced(in_bag, card, tmp_path):
    out = tmp_path / "stylized.mcap"
    assert run(in_bag, card, out, "--max-frames", 1) == 0
    assert run(in_bag, card, out, "--max-frames", 2, "--overwrite") == 0
    with bag_io.BagReader(out) as bag:
        assert {t.name: t.count for t in bag.topics()}[TOPIC + "/stylized"] == 2


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partials_of_killed_runs_are_removed(in_bag, card, tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f".old.partial-{dead}"
    stale.mkdir()
    (stale / bag_io.OUTPUT_MARKER).write_text("x")
    (stale / "big.mcap").write_bytes(bytes(1000))
    running = tmp_path / f".other.partial-{alive}"          # a run still going: left alone
    running.mkdir()
    (running / bag_io.OUTPUT_MARKER).write_text("x")
    unmarked = tmp_path / f".mine.partial-{dead}"            # not ours: left alone
    unmarked.mkdir()
    assert run(in_bag, card, tmp_path / "out", "--max-frames", 1) == 0
    assert not stale.exists() and running.is_dir() and unmarked.is_dir()


KILLED_RUN = """
import os, signal, sys
from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_ros.evaluation import eval_bag_cli
real, calls = Stylizer.stylize, []
def stylize(self, *a, **kw):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)        # no finally, no atexit: as a power cut
    return real(self, *a, **kw)
Stylizer.stylize = stylize
eval_bag_cli.main(sys.argv[1:])
"""


def test_a_sigkilled_run_leaves_no_bag_and_the_next_run_cleans_up(in_bag, card, tmp_path):
    out = tmp_path / "out"
    args = [str(in_bag), "--topic", TOPIC, "--model", str(card), "--out", str(out), "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_RUN), *args], capture_output=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    partials = list(tmp_path.glob(".out.partial-*"))
    assert len(partials) == 1 and not out.exists()          # nothing that looks complete
    assert run(in_bag, card, out, "--max-frames", 1) == 0
    assert not partials[0].exists() and (out / bag_io.OUTPUT_MARKER).is_file()
