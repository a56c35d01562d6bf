"""The plain-Python pieces under the nodes: meters, the latest-frame slot, frame sources, recording
helpers, intrinsics scaling and parameter specs. No DDS here (see test_nodes.py)."""
import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from muon_ad_ros.core.contact_sheet import (SheetCollector, VideoRecorder, make_contact_sheet, save_png)
from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_ros.core.frame_sources import (ImageFolderSource, SampleSource, VideoSource, fit_frame, looping,
                                            nominal_intrinsics, open_source)
from muon_ad_ros.core.rolling_stats import PercentileWindow, RateMeter, StageTimes, percentile
from muon_ad_ros.nodes.latest_slot import LatestSlot

# ------------------------------------------------------------------------------------------------
# rolling_stats


@pytest.mark.parametrize("q", [0, 5, 50, 95, 100])
def test_percentile_matches_numpy(q):
    values = np.random.default_rng(0).exponential(10.0, size=101)
    assert percentile(values.tolist(), q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_nothing_is_nan_and_bad_q_raises():
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_rate_meter_counts_only_the_window():
    meter = RateMeter(window_s=2.0, clock=lambda: 0.0)
    for k in range(21):                    # 10 Hz for 2 s
        meter.tick(now=k * 0.1)
    assert meter.rate(now=2.0) == pytest.approx(10.0)
    for k in range(1, 6):                  # then 2 Hz
        meter.tick(now=2.0 + k * 0.5)
    assert meter.rate(now=4.5) == pytest.approx(2.0, rel=0.3)   # the 10 Hz burst has left the window
    assert meter.total == 26
    assert meter.seconds_since_last(now=5.0) == pytest.approx(0.5)
    assert meter.rate(now=100.0) == 0.0 and meter.seconds_since_last(now=100.0) == math.inf


def test_percentile_window_keeps_the_last_samples():
    window = PercentileWindow(size=10)
    for v in range(100):
        window.add(v)
    s = window.summary()
    assert s["n"] == 10 and window.count == 100
    assert s["p50"] == pytest.approx(94.5) and s["max"] == 99


def test_stage_times_summarise_each_stage():
    times = StageTimes(size=50)
    for k in range(20):
        times.add_all({"inference": 10.0 + k, "decode": 1.0})
    s = times.summary()
    assert set(s) == {"inference", "decode"}
    assert s["decode"]["p95"] == 1.0 and s["inference"]["p50"] == pytest.approx(19.5)


# ------------------------------------------------------------------------------------------------
# latest slot


def test_latest_slot_keeps_the_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take(timeout=0.1) == 3 and slot.dropped == 2
    assert slot.take(timeout=0.05) is None


def test_latest_slot_wakes_a_waiting_worker_and_closes():
    slot, got = LatestSlot(), []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    worker.start()
    slot.put("frame")
    worker.join(2)
    assert got == ["frame"]
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    waiter.start()
    slot.close()
    waiter.join(2)
    assert not waiter.is_alive() and got[-1] is None and slot.take() is None


# ------------------------------------------------------------------------------------------------
# frame sources


def test_sample_source_moves_over_real_photos():
    src = SampleSource(160, 120, frames_per_image=4)
    frames = list(src.frames())
    assert len(frames) == 16 and all(f.rgb.shape == (120, 160, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert [f.label for f in frames[::4]] == ["astronaut", "coffee", "chelsea", "rocket"]
    assert np.abs(frames[0].rgb.astype(int) - frames[3].rgb.astype(int)).mean() > 3   # it pans / zooms
    assert frames[0].rgb.std() > 20                                                    # a photo, not flat


def test_folder_source_sorts_resizes_and_skips_unreadable(tmp_path):
    from skimage import data

    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    (tmp_path / "c.png").write_bytes(b"not a png")
    src = open_source(str(tmp_path), width=64)
    assert isinstance(src, ImageFolderSource)
    frames = list(src.frames())
    assert [f.label for f in frames] == ["a.jpg", "b.png"] and src.skipped == ["c.png"]
    assert frames[0].rgb.shape == (43, 64, 3)   # coffee is 600x400: height follows the aspect
    # RGB order kept: chelsea (a ginger cat) is redder than it is blue
    assert frames[1].rgb[..., 0].mean() > frames[1].rgb[..., 2].mean()


def test_looping_repeats_and_stops_at_max_frames(tmp_path):
    rgb = np.full((8, 8, 3), 200, np.uint8)
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"{k}.png"), rgb)
    src = open_source(str(tmp_path))
    assert [f.index for f in looping(src, loop=True, max_frames=7)] == [0, 1, 2, 0, 1, 2, 0]
    assert len(list(looping(src, loop=False))) == 3


def test_video_source_reads_frames(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for k in range(5):
        writer.write(np.full((24, 32, 3), 40 * k, np.uint8))
    writer.release()
    src = open_source(str(path))
    assert isinstance(src, VideoSource) and src.fps == pytest.approx(10.0)
    frames = list(src.frames())
    assert len(frames) == 5 and frames[-1].rgb.mean() == pytest.approx(160, abs=6)


def test_bag_source_reads_an_image_topic(tmp_path):
    from _bag_helpers import write_bag

    rgbs = [np.full((24, 32, 3), 30 * k, np.uint8) for k in range(4)]
    bag = write_bag(tmp_path / "b", rgbs, image_topic="/cam/image_raw", compressed_topic="")
    src = open_source(str(bag))                       # the bag also has a non-image topic
    assert src.topic == "/cam/image_raw"
    frames = list(src.frames())
    assert [int(f.rgb.mean()) for f in frames] == [0, 30, 60, 90]


def test_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(ConfigError, match="no images"):
        open_source(str(tmp_path))
    (tmp_path / "x.mp4").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot open video"):
        open_source(str(tmp_path / "x.mp4"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "bad.png").write_bytes(b"nope")
    with pytest.raises(ImageFormatError, match="no readable frame"):
        list(looping(open_source(str(tmp_path / "folder"))))


def test_fit_frame_and_nominal_intrinsics():
    rgb = np.zeros((100, 200, 3), np.uint8)
    assert fit_frame(rgb, 50, 0).shape == (25, 50, 3) and fit_frame(rgb).shape == rgb.shape
    k, p = nominal_intrinsics(640, 480, hfov_deg=90.0)
    assert k[0] == pytest.approx(320.0) and k[2] == pytest.approx(319.5) and p[0] == k[0] and p[10] == 1.0


# ------------------------------------------------------------------------------------------------
# recording


def test_video_recorder_writes_a_readable_video(tmp_path):
    rec = VideoRecorder(tmp_path / "out.mp4", fps=10.0)
    for k in range(6):
        rec.write(np.full((48, 64, 3), (40 * k, 0, 0), np.uint8))
    rec.write(np.zeros((24, 32, 3), np.uint8))              # another size: resized, not an error
    assert rec.close() == tmp_path / "out.mp4"
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 7 and not list(tmp_path.glob(".*partial*"))
    with pytest.raises(ConfigError):
        VideoRecorder(tmp_path / "x.gif", fps=10.0)


def test_sheet_collector_takes_the_last_frame_of_each_label():
    sheet = SheetCollector(max_tiles=8, thumb_width=16)
    for k in range(30):
        label = "" if k < 3 else ("a" if k < 12 else "b" if k < 20 else "c")
        sheet.add(np.full((12, 16, 3), k, np.uint8), label)
    tiles = sheet.tiles()
    assert [(t.label, t.index) for t in tiles] == [("a", 11), ("b", 19), ("c", 29)]
    assert tiles[0].thumb[0, 0, 0] == 11


def test_sheet_collector_spreads_unlabelled_tiles_evenly():
    sheet = SheetCollector(max_tiles=6, thumb_width=8)
    for k in range(100):
        sheet.add(np.full((4, 8, 3), k % 256, np.uint8))
    idx = [t.index for t in sheet.tiles()]
    assert len(idx) == 6 and idx[0] == 0 and idx[-1] >= 60
    gaps = np.diff(idx)
    assert gaps.min() > 0 and gaps.max() <= 2 * gaps.min()


def test_contact_sheet_layout(tmp_path):
    sheet = SheetCollector(max_tiles=8, thumb_width=32)
    for k, label in enumerate("abcde"):
        sheet.add(np.full((24, 32, 3), 50 * k, np.uint8), label)
    img = make_contact_sheet(sheet.tiles(), columns=2, title="t")
    assert img.dtype == np.uint8 and img.shape[1] == 2 * 32 + 3 * 6
    assert img.shape[0] > 3 * 24                          # three rows of tiles plus captions
    path = save_png(tmp_path / "s.png", img)
    assert cv2.imread(str(path)).shape == img.shape
    with pytest.raises(ConfigError):
        make_contact_sheet([], columns=2)


# ------------------------------------------------------------------------------------------------
# message conversions and parameter specs (pure functions of the node layer)


def test_scale_intrinsics_halves_focal_and_centre():
    from muon_ad_ros.nodes.conversions import scale_intrinsics, sibling_topic

    k = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 319.5, -30.0, 0.0, 500.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    k2, p2 = scale_intrinsics(k, p, 0.5, 0.25)
    assert k2 == [250.0, 0.0, 159.75, 0.0, 125.0, 59.875, 0.0, 0.0, 1.0]
    assert p2[:4] == [250.0, 0.0, 159.75, -15.0] and p2[5:7] == [125.0, 59.875] and p2[8:] == p[8:]
    # a 3D point projects to the scaled pixel
    X = np.array([0.3, -0.2, 2.0, 1.0])
    uv = np.array(p).reshape(3, 4) @ X
    uv2 = np.array(p2).reshape(3, 4) @ X
    assert uv2[0] / uv2[2] == pytest.approx(0.5 * uv[0] / uv[2])
    assert uv2[1] / uv2[2] == pytest.approx(0.25 * uv[1] / uv[2])
    assert sibling_topic("/cam/left/image_raw", "camera_info") == "/cam/left/camera_info"


def test_param_spec_validation():
    from muon_ad_ros.nodes.params import ParamSpec, check_topic

    rate = ParamSpec("rate", 15.0, "Hz", float_range=(0.1, 100.0))
    assert rate.validate(15) is None and rate.validate(2.5) is None
    assert "within" in rate.validate(0.0) and "must be a float" in rate.validate("fast")
    mode = ParamSpec("mode", "raw", "", choices=("raw", "compressed"))
    assert mode.validate("raw") is None and "one of" in mode.validate("theora")
    assert ParamSpec("n", 1, "", int_range=(1, 5)).validate(True) is not None   # bool is not an int here
    assert check_topic("image_raw") is None and check_topic("/a/b") is None
    assert "invalid topic" in check_topic("bad topic")
    descriptor = rate.descriptor()
    assert descriptor.read_only and descriptor.floating_point_range[0].to_value == 100.0


def test_demo_is_a_muon_ad_sub_command():
    from muon_ad_ros import demo
    from muon_ad_ros.cli import build_parser

    args = build_parser().parse_args(["demo", "--seconds-per-style", "2", "--size", "320x240"])
    assert args.func is demo.run and args.seconds_per_style == 2.0 and args.output_dir == "out/demo"
    assert demo.parse_size(args.size) == (320, 240)
    with pytest.raises(ConfigError):
        demo.parse_size("big")
    commands = demo.node_commands(args, demo.config_dir() / "demo.yaml", demo.Path("out/x"), untrained=True)
    assert set(commands) == {"image_source_node", "stylize_node", "recorder_node"}
    assert all(str(demo.config_dir() / "demo.yaml") in cmd for cmd in commands.values())
    assert "width:=320" in commands["image_source_node"] and "model:=default" in commands["stylize_node"]


def test_demo_environment_carries_large_images(monkeypatch):
    from muon_ad_ros import demo

    for key in demo.TRANSPORT_VARIABLES + ("ROS_DOMAIN_ID",):
        monkeypatch.delenv(key, raising=False)
    env = demo.dds_environment(None)
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).name == "fastdds_images.xml"
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in env and 100 <= int(env["ROS_DOMAIN_ID"]) <= 199
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")          # a user's choice is kept
    env = demo.dds_environment(7)
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA" and env["ROS_DOMAIN_ID"] == "7"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in env


def test_node_teardown_has_a_deadline():
    """A DDS teardown that blocks for good (Fast DDS TCP transport) must not keep a node process
    alive: past the deadline it exits with the status it would have had."""
    import subprocess
    import sys

    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    # destroy_node never returns: the process can only end through the deadline (without it,
    # subprocess.run's timeout raises and the test fails).
    script = ("import sys, threading\n"
              "from muon_ad_ros.nodes.shutdown import shutdown\n"
              "class StuckNode:\n"
              "    def destroy_node(self):\n"
              "        threading.Event().wait()\n"
              "print('files written', flush=True)\n"
              "sys.exit(shutdown(StuckNode(), 3, deadline_s=0.5))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert run.returncode == 3 and "files written" in run.stdout, run.stderr
