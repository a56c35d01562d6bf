"""muon-ad eval-bag end to end: real bags, bags written from real footage, every bad input.

The bags are written here from camera frames (_bag_helpers.camera_frames: the shared video, else
the built-in sample over scikit-image photos), so only the tests of real third-party recordings
need ../shared."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

import _bag_helpers as H
from muon_ad_ros.core.image_codec import decode_compressed, fields_to_rgb8
from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_ros.evaluation import bag_eval, eval_bag_cli

RERUN_BAG = H.BAGS / "rerun_sensor_msgs.mcap"
ROS1_NO_IMAGES = H.BAGS / "webviz_ros1_no_images.bag"
IMG, CMP = "/camera/image_raw", "/camera/image_raw/compressed"
N_FRAMES = 10
BAD_COMPRESSED = (4,)  # index of the CompressedImage frame holding garbage bytes


def cli(*argv):
    return eval_bag_cli.main([str(a) for a in argv] + ["--no-progress"])


def read_bag(path):
    """{topic: [(bag timestamp, message)]} of a bag, read with plain rosbags (not our reader)."""
    out = {}
    with AnyReader([Path(path)], default_typestore=H.TS) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, r.deserialize(raw, conn.msgtype)))
    return out


def to_rgb(msg):
    if hasattr(msg, "format"):
        return decode_compressed(msg.format, msg.data)
    return fields_to_rgb8(msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian, msg.data)


def stamp(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def assert_user_error(rc, capsys, *fragments):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("muon-ad eval-bag: error:"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def frames():
    return H.camera_frames(N_FRAMES)


@pytest.fixture(scope="module")
def stylizer():
    return Stylizer.from_model("default")


@pytest.fixture(scope="module")
def mcap_bag(frames, tmp_path_factory):
    return H.write_bag(tmp_path_factory.mktemp("in") / "cam_mcap", frames, "mcap",
                       bad_compressed=BAD_COMPRESSED)


# -- a real ROS 2 recording -----------------------------------------------------------------------

@pytest.mark.skipif(not RERUN_BAG.exists(), reason=f"{RERUN_BAG} absent: ../shared is not checked out")
def test_real_mcap_bag_both_image_topics(tmp_path, capsys):
    assert cli(RERUN_BAG) == 0  # no --topic: lists the image topics
    listing = capsys.readouterr().out
    assert "/image  sensor_msgs/msg/Image" in listing
    assert "/compressed_image  sensor_msgs/msg/CompressedImage" in listing
    assert "/camera_info" not in listing

    out, rep = tmp_path / "stylized.mcap", tmp_path / "report"
    rc = cli(RERUN_BAG, "--topic", "/image", "--topic", "/compressed_image", "--out", out,
             "--report", rep, "--compressed")
    assert rc == 0, capsys.readouterr().err
    assert out.is_file() and out.read_bytes()[:8] == b"\x89MCAP0\r\n"  # one MCAP file, as named
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "stylized.mcap"]
    src, dst = read_bag(RERUN_BAG), read_bag(out)
    assert set(dst) == {"/image/stylized", "/image/stylized/compressed",
                        "/compressed_image/stylized", "/compressed_image/stylized/compressed"}
    for topic in ("/image", "/compressed_image"):
        (t_in, m_in), = src[topic]
        for suffix in ("/stylized", "/stylized/compressed"):
            (t_out, m_out), = dst[topic + suffix]
            assert t_out == t_in and stamp(m_out) == stamp(m_in)
            assert m_out.header.frame_id == m_in.header.frame_id
            assert to_rgb(m_out).shape == to_rgb(m_in).shape == (480, 640, 3)
    report = json.loads((rep / "report.json").read_text())
    assert {t["name"] for t in report["input"]["topics"]} >= {"/image", "/compressed_image", "/imu"}
    for topic in ("/image", "/compressed_image"):
        s = report["topics"][topic]
        assert s["frames_evaluated"] == 1 and s["frames_skipped"] == 0
        assert s["quality"]["warping_error"] is None  # one frame: no temporal metric, said so
        assert -1 <= s["quality"]["luminance_ssim"] <= 1


# -- bags written from a real video ---------------------------------------------------------------

@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_end_to_end_on_video_bag(storage, frames, stylizer, tmp_path, capsys):
    bag = H.write_bag(tmp_path / f"cam_{storage}", frames, storage, bad_compressed=BAD_COMPRESSED)
    given = bag if storage == "mcap" else H.storage_file(bag)  # a directory, or the .db3 alone
    out, rep = tmp_path / "out", tmp_path / "report"
    rc = cli(given, "--all-topics", "--out", out, "--report", rep, "--storage", storage,
             "--compressed", "--copy-input")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "/camera/image_raw: 10/10 frames" in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bag.name, "out", "report"])
    assert H.storage_file(out).suffix == {"mcap": ".mcap", "sqlite3": ".db3"}[storage]

    src, dst = read_bag(bag), read_bag(out)
    for topic in (IMG, CMP):
        originals = src[topic]
        kept = [(t, m) for i, (t, m) in enumerate(originals) if topic == IMG or i not in BAD_COMPRESSED]
        for suffix in ("/stylized", "/stylized/compressed"):
            written = dst[topic + suffix]
            assert [t for t, _ in written] == [t for t, _ in kept]  # original bag times, in order
            assert [stamp(m) for _, m in written] == [stamp(m) for _, m in kept]
            assert all(m.header.frame_id == "camera" for _, m in written)
        # the same Stylizer as the node, frame by frame: the bag holds exactly its output
        for (_, m_in), (_, m_out) in zip(kept, dst[topic + "/stylized"]):
            assert m_out.encoding == "rgb8"
            np.testing.assert_array_equal(to_rgb(m_out), stylizer.stylize(to_rgb(m_in)).image)
        # --copy-input: the original messages, all of them, byte for byte
        assert [t for t, _ in dst[topic]] == [t for t, _ in originals]
        assert all(bytes(a.data) == bytes(b.data) for (_, a), (_, b) in zip(dst[topic], originals))
    assert "/temperature" not in dst

    report = json.loads((rep / "report.json").read_text())
    assert report["model"]["id"] == stylizer.card["id"]
    assert {t["name"]: t["count"] for t in report["input"]["topics"]} == {
        IMG: N_FRAMES, CMP: N_FRAMES, "/temperature": N_FRAMES}
    assert report["output_bag"]["topics"][IMG + "/stylized"] == N_FRAMES
    assert report["frames_evaluated"] == 2 * N_FRAMES - len(BAD_COMPRESSED)
    assert report["pipeline_fps"] == pytest.approx(report["frames_evaluated"] / report["wall_s"])
    for topic, expected in ((IMG, N_FRAMES), (CMP, N_FRAMES - len(BAD_COMPRESSED))):
        s = report["topics"][topic]
        assert s["frames_evaluated"] == expected
        assert s["frames_skipped"] == N_FRAMES - expected
        if topic == CMP:
            assert s["skip_reasons"] == {"undecodable frame": len(BAD_COMPRESSED)}
        for stage in ("decode", "preprocess", "inference", "postprocess", "stylize", "encode", "write",
                      "metrics"):
            st = s["latency"][stage]
            assert st["count"] == expected
            assert 0 <= st["p50_ms"] <= st["p95_ms"] <= st["p99_ms"] <= st["max_ms"]
        assert s["throughput_fps"] > 0 and s["pipeline_fps"] > 0
        q = s["quality"]
        assert q["frames"] == expected
        assert -1 <= q["luminance_ssim"] <= 1
        assert 0 <= q["edge_agreement"] <= 1
        # both are mean squared differences of [0,1] images; which is larger depends on the model
        assert 0 < q["warping_error_input_floor"] <= 1 and 0 <= q["warping_error"] <= 1
        assert 0 <= q["occluded_fraction"] < 0.5
        assert 0 <= q["flicker"] <= 1 and 0 <= q["flicker_input"] <= 1
        assert -1 <= q["flicker_excess"] <= 1
        assert len(s["per_frame"]["warping_error"]) == expected - 1

    md = (rep / "report.md").read_text()
    assert report["model"]["id"] in md
    pngs = [ln.split("(")[1].rstrip(")") for ln in md.splitlines() if ln.startswith("![")]
    assert len(pngs) == 6  # latency, warping error, samples for each topic
    for name in pngs:
        img = cv2.imread(str(rep / name))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


def test_single_file_outputs(mcap_bag, tmp_path, capsys):
    for name in ("x.db3", "x.mcap"):
        assert cli(mcap_bag, "--topic", IMG, "--out", tmp_path / name, "--max-frames", "2") == 0
        assert (tmp_path / name).is_file()
        assert len(read_bag(tmp_path / name)[IMG + "/stylized"]) == 2
    assert (tmp_path / "x.db3").read_bytes()[:16] == b"SQLite format 3\x00"
    rc = cli(mcap_bag, "--topic", IMG, "--out", tmp_path / "y.mcap", "--storage", "sqlite3")
    assert_user_error(rc, capsys, "--storage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db3", "x.mcap"]


def test_ros1_bag(frames, stylizer, tmp_path, capsys):
    bag = H.write_ros1_bag(tmp_path / "cam.bag", frames[:4])
    out = tmp_path / "out"
    assert cli(bag, "--topic", IMG, "--out", out, "--copy-input") == 0, capsys.readouterr().err
    src, dst = read_bag(bag), read_bag(out)
    for (t_in, m_in), (t_out, m_out), (t_copy, m_copy) in zip(src[IMG], dst[IMG + "/stylized"], dst[IMG]):
        assert t_out == t_in == t_copy and stamp(m_out) == stamp(m_in) == stamp(m_copy)
        assert m_out.encoding == "bgr8"  # the camera's encoding is kept
        np.testing.assert_array_equal(to_rgb(m_out), stylizer.stylize(to_rgb(m_in)).image)
        np.testing.assert_array_equal(to_rgb(m_copy), to_rgb(m_in))


def test_static_camera_has_zero_warping_error(frames, stylizer, tmp_path):
    bag = H.write_bag(tmp_path / "static", [frames[0]] * 5, "mcap", compressed_topic=None)
    result = bag_eval.evaluate_bag(bag, stylizer, bag_eval.EvalConfig(topics=[IMG]))
    q = result.topics[IMG].quality.summary()
    assert q["warping_error"] == 0.0 and q["flicker"] == 0.0 and q["frames"] == 5


def test_evaluation_is_deterministic(mcap_bag, stylizer, tmp_path):
    runs = [bag_eval.evaluate_bag(mcap_bag, stylizer, bag_eval.EvalConfig(
        topics=[CMP, IMG], out_path=tmp_path / f"o{i}")) for i in range(2)]
    a, b = (r.topics[IMG].quality.summary() for r in runs)
    assert a == b
    first, second = read_bag(tmp_path / "o0"), read_bag(tmp_path / "o1")
    for topic in (IMG + "/stylized", CMP + "/stylized"):
        assert [bytes(m.data) for _, m in first[topic]] == [bytes(m.data) for _, m in second[topic]]


# -- listing and bad input ----------------------------------------------------------------------

def test_listing_without_topic(mcap_bag, tmp_path, capsys):
    assert cli(mcap_bag) == 0
    out = capsys.readouterr().out
    assert IMG in out and CMP in out and "/temperature" not in out
    rc = cli(mcap_bag, "--out", tmp_path / "o")  # asked for output, but of which topic?
    assert_user_error(rc, capsys, "--topic")
    assert not (tmp_path / "o").exists()


def test_missing_file(tmp_path, capsys):
    assert_user_error(cli(tmp_path / "nope.mcap", "--topic", IMG), capsys, "no such file")


@pytest.mark.parametrize("name,content", [("notes.mcap", b"just some text\n" * 10),
                                          ("photo.bag", b"\xff\xd8\xff\xe0" + bytes(100)),
                                          ("empty.db3", b"")])
def test_file_that_is_not_a_bag(name, content, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(content)
    assert_user_error(cli(path, "--topic", IMG), capsys, "not a rosbag")


def test_directory_without_metadata(mcap_bag, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "x.mcap").write_bytes(H.storage_file(mcap_bag).read_bytes())
    assert_user_error(cli(bare, "--topic", IMG), capsys, "metadata.yaml", "x.mcap")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(storage, frames, tmp_path, capsys):
    bag = H.write_bag(tmp_path / "full", frames[:6], storage)
    whole = H.storage_file(bag).read_bytes()
    cut = tmp_path / f"cut{H.storage_file(bag).suffix}"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    out = tmp_path / "out"
    assert_user_error(cli(cut, "--topic", IMG, "--out", out), capsys, "truncated")
    assert not out.exists()


def test_absent_topic_lists_image_topics(mcap_bag, capsys):
    assert_user_error(cli(mcap_bag, "--topic", "/camera/left"), capsys, "/camera/left", IMG, CMP)


def test_unsupported_message_type(mcap_bag, capsys):
    assert_user_error(cli(mcap_bag, "--topic", "/temperature"), capsys,
                      "unsupported type sensor_msgs/msg/Temperature")


@pytest.mark.skipif(not ROS1_NO_IMAGES.exists(), reason=f"{ROS1_NO_IMAGES} absent: ../shared missing")
def test_ros1_bag_without_images(capsys):
    assert_user_error(cli(ROS1_NO_IMAGES), capsys, "no sensor_msgs Image", "/turtle1/pose")


def test_all_compressed_frames_undecodable(frames, tmp_path, capsys):
    bag = H.write_bag(tmp_path / "bad", frames[:4], "mcap", image_topic=None,
                      bad_compressed=range(4))
    rep = tmp_path / "rep"
    assert cli(bag, "--topic", CMP, "--report", rep) == 0, capsys.readouterr().err
    s = json.loads((rep / "report.json").read_text())["topics"][CMP]
    assert s["frames_evaluated"] == 0 and s["skip_reasons"] == {"undecodable frame": 4}
    assert s["quality"]["luminance_ssim"] is None


def test_existing_output_is_kept_unless_overwrite(mcap_bag, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    assert_user_error(cli(mcap_bag, "--topic", IMG, "--out", out), capsys, "exists already")
    assert (out / "precious.txt").read_text() == "mine"
    # --overwrite replaces only a bag this tool wrote (test_bag_output.py), not this directory
    assert_user_error(cli(mcap_bag, "--topic", IMG, "--out", out, "--overwrite"), capsys, "did not write")
    assert (out / "precious.txt").read_text() == "mine"
    mine = tmp_path / "mine"
    assert cli(mcap_bag, "--topic", IMG, "--out", mine, "--max-frames", "2") == 0
    assert cli(mcap_bag, "--topic", IMG, "--out", mine, "--overwrite", "--max-frames", "3") == 0
    assert len(read_bag(mine)[IMG + "/stylized"]) == 3


@pytest.mark.parametrize("args,fragment", [(["--model", "no_such_model"], "no_such_model"),
                                           (["--style", "no_such_style"], "no_such_style"),
                                           (["--resolution", "big"], "--resolution"),
                                           (["--strength", "3"], "strength")])
def test_bad_options(mcap_bag, tmp_path, capsys, args, fragment):
    rc = cli(mcap_bag, "--topic", IMG, "--out", tmp_path / "o", *args)
    assert_user_error(rc, capsys, fragment)
    assert not (tmp_path / "o").exists()


def test_ctrl_c_leaves_nothing_that_looks_complete(mcap_bag, tmp_path, capsys, monkeypatch):
    calls = []
    real = Stylizer.stylize

    def interrupted(self, rgb, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, rgb, *a, **kw)

    monkeypatch.setattr(Stylizer, "stylize", interrupted)
    out, rep = tmp_path / "out", tmp_path / "rep"
    rc = cli(mcap_bag, "--all-topics", "--out", out, "--report", rep)
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no bag, no partial bag, no report


def test_report_path_that_is_a_file(mcap_bag, tmp_path, capsys):
    blocker = tmp_path / "report"
    blocker.write_text("not a directory")
    rc = cli(mcap_bag, "--topic", IMG, "--out", tmp_path / "o", "--report", blocker)
    assert_user_error(rc, capsys, "is a file")
    assert not (tmp_path / "o").exists()  # refused before evaluating anything
