"""eval-bag with the temporal option: each topic is its own video, and the output gets steadier."""
import numpy as np
import pytest

import _bag_helpers as H
from _core_helpers import tiny_bundle
from test_temporal import panning_sequence

from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_ros.evaluation import bag_eval, eval_bag_cli

IMG, CMP = "/camera/image_raw", "/camera/image_raw/compressed"


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    frames, _ = panning_sequence(n=8)
    return H.write_bag(tmp_path_factory.mktemp("in") / "pan", frames, "mcap")


def test_temporal_topics_are_separate_videos_and_steadier(bag, card):
    plain = Stylizer.from_model(card, threads=1)
    steady = Stylizer.from_model(card, threads=1, temporal=True)
    both = bag_eval.evaluate_bag(bag, steady, bag_eval.EvalConfig(topics=[IMG, CMP]))
    alone = bag_eval.evaluate_bag(bag, steady.for_stream(), bag_eval.EvalConfig(topics=[IMG]))
    off = bag_eval.evaluate_bag(bag, plain, bag_eval.EvalConfig(topics=[IMG]))
    q_both, q_alone, q_off = (r.topics[IMG].quality.summary() for r in (both, alone, off))
    assert q_both["warping_error"] == pytest.approx(q_alone["warping_error"], rel=1e-6)  # CMP frames did not leak in
    assert q_both["warping_error"] < q_off["warping_error"]
    lat = both.topics[IMG].summary(1.0)["latency"]
    assert lat["temporal"]["count"] == 8 and "temporal" not in off.topics[IMG].summary(1.0)["latency"]


def test_cli_flag(bag, card, tmp_path, capsys):
    rc = eval_bag_cli.main([str(bag), "--topic", IMG, "--model", str(card), "--temporal", "--no-progress",
                            "--report", str(tmp_path / "rep")])
    assert rc == 0, capsys.readouterr().err
    import json

    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["model"]["temporal"] is True
    assert np.isfinite(report["topics"][IMG]["quality"]["warping_error"])


# -- stereo bags ----------------------------------------------------------------------------------

LEFT, RIGHT = "/stereo/left/image_raw", "/stereo/right/image_raw"


@pytest.fixture(scope="module")
def stereo_bag(tmp_path_factory):
    """Four pairs of the motorcycle pair (a third of its size, shifted a little each frame), the
    eyes' stamps equal as a synchronised stereo driver's; then one left frame without a partner."""
    import cv2
    from rosbags.rosbag2 import Writer

    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    size = (left.shape[1] // 3, left.shape[0] // 3)
    left, right = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (left, right))
    path = tmp_path_factory.mktemp("stereo") / "pair"
    with Writer(path, version=9) as w:
        conns = [w.add_connection(t, H.Image.__msgtype__, typestore=H.TS) for t in (LEFT, RIGHT)]
        for i in range(4):
            for k, (conn, img) in enumerate(zip(conns, (left, right))):
                msg = H.image_msg(np.ascontiguousarray(np.roll(img, 2 * i, axis=0)), i)
                w.write(conn, H.receive_time(i) + k * 1000, H.TS.serialize_cdr(msg, H.Image.__msgtype__))
        w.write(conns[0], H.receive_time(9), H.TS.serialize_cdr(H.image_msg(left, 9), H.Image.__msgtype__))
    return path


def test_stereo_bag_pairs_consistent_vs_independent(stereo_bag, card, tmp_path):
    stylizer = Stylizer.from_model(card, threads=1)
    runs = {mode: bag_eval.evaluate_bag(stereo_bag, stylizer, bag_eval.EvalConfig(
        topics=[LEFT, RIGHT], stereo=(LEFT, RIGHT), stereo_mode=mode, out_path=tmp_path / mode))
        for mode in ("independent", "consistent")}
    for mode, result in runs.items():
        st = result.stereo
        assert (st["mode"], st["pairs"], st["unmatched"]) == (mode, 4, 1)
        assert result.topics[LEFT].evaluated == result.topics[RIGHT].evaluated == 4
        assert result.out_counts == {LEFT + "/stylized": 4, RIGHT + "/stylized": 4}
    cons, indep = runs["consistent"].stereo, runs["independent"].stereo
    assert cons["difference"] < 0.6 * indep["difference"]
    assert "disparity" in runs["consistent"].topics[RIGHT].summary(1.0)["latency"]


def test_stereo_cli(stereo_bag, card, capsys):
    rc = eval_bag_cli.main([str(stereo_bag), "--stereo", LEFT, RIGHT, "--model", str(card), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "stereo (consistent): 4 pairs, 1 unmatched frames" in out.out
    assert eval_bag_cli.main([str(stereo_bag), "--stereo", LEFT, LEFT, "--model", str(card)]) == 2
    assert eval_bag_cli.main([str(stereo_bag), "--stereo", LEFT, "/nope", "--model", str(card)]) == 2
