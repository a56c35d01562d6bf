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
