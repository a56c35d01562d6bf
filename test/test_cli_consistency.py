"""`muon-ad stylize --temporal` on sequences and `muon-ad stylize-stereo` on pairs, videos, folders."""
import cv2
import numpy as np
import pytest

from _core_helpers import tiny_bundle
from test_cli import muon_ad, write_photo
from test_temporal import panning_sequence

from muon_ad_ros.evaluation.metrics import flow_between, warping_error


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


@pytest.fixture(scope="module")
def pair():
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    size = (left.shape[1] // 3, left.shape[0] // 3)
    return [cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (left, right)]


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def sequence_warping_error(inputs, outputs):
    return float(np.mean([warping_error(a, b, flow_between(i, j))
                          for i, j, a, b in zip(inputs, inputs[1:], outputs, outputs[1:])]))


def test_temporal_folder_is_a_sequence_in_name_order(tmp_path, card):
    frames, _ = panning_sequence(n=6)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in reversed(range(len(frames))):  # written last-first: the order must come from the names
        write_photo(folder / f"f{i:02d}.png", frames[i])
    muon_ad("stylize", folder, tmp_path / "off", "--model", card)
    muon_ad("stylize", folder, tmp_path / "on", "--model", card, "--temporal")
    off = [read_rgb(tmp_path / "off" / f"f{i:02d}.png") for i in range(6)]
    on = [read_rgb(tmp_path / "on" / f"f{i:02d}.png") for i in range(6)]
    assert np.array_equal(off[0], on[0])  # the first frame has no past
    assert not np.array_equal(off[3], on[3])
    assert sequence_warping_error(frames, on) < sequence_warping_error(frames, off)


def test_temporal_video(tmp_path, card):
    frames, _ = panning_sequence(n=5)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frames[0].shape[1], frames[0].shape[0]))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    proc = muon_ad("stylize", video, tmp_path / "out.avi", "--model", card, "--temporal")
    assert "stylized 5 frame" in proc.stdout
    assert not list(tmp_path.glob(".*partial*"))


def test_stereo_images_consistent_and_side_by_side(tmp_path, pair, card):
    left, right = (write_photo(tmp_path / f"{n}.png", x) for n, x in zip(("l", "r"), pair))
    proc = muon_ad("stylize-stereo", left, right, tmp_path / "ol.png", tmp_path / "or.png", "--model", card,
                   "--side-by-side", tmp_path / "sbs.png")
    assert "stylized 1 pair(s) (consistent)" in proc.stdout
    ol, orr, sbs = (read_rgb(tmp_path / n) for n in ("ol.png", "or.png", "sbs.png"))
    assert ol.shape == orr.shape == pair[0].shape
    assert np.array_equal(sbs, np.concatenate([ol, orr], axis=1))
    muon_ad("stylize-stereo", left, right, tmp_path / "il.png", tmp_path / "ir.png", "--model", card,
            "--mode", "independent")
    assert np.array_equal(read_rgb(tmp_path / "il.png"), ol)
    assert not np.array_equal(read_rgb(tmp_path / "ir.png"), orr)


def test_stereo_videos_and_folders(tmp_path, pair, card):
    h, w = pair[0].shape[:2]
    for side, img in zip(("left", "right"), pair):
        writer = cv2.VideoWriter(str(tmp_path / f"{side}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
        for k in range(3 if side == "left" else 2):  # one unmatched left frame
            writer.write(cv2.cvtColor(np.roll(img, k, axis=1), cv2.COLOR_RGB2BGR))
        writer.release()
        (tmp_path / side).mkdir()
        for k in range(2):
            write_photo(tmp_path / side / f"{k}.png", np.roll(img, k, axis=1))
    proc = muon_ad("stylize-stereo", tmp_path / "left.avi", tmp_path / "right.avi", tmp_path / "ol.avi",
                   tmp_path / "or.avi", "--model", card)
    assert "stylized 2 pair(s)" in proc.stdout and "1 unmatched" in proc.stdout
    assert int(cv2.VideoCapture(str(tmp_path / "or.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    muon_ad("stylize-stereo", tmp_path / "left", tmp_path / "right", tmp_path / "fl", tmp_path / "fr",
            "--model", card)
    assert sorted(p.name for p in (tmp_path / "fr").iterdir()) == ["0.png", "1.png"]


def test_stereo_user_errors(tmp_path, pair, card):
    left = write_photo(tmp_path / "l.png", pair[0])
    (tmp_path / "d").mkdir()
    proc = muon_ad("stylize-stereo", left, tmp_path / "d", tmp_path / "a.png", tmp_path / "b.png",
                   "--model", card, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "must both be" in proc.stderr
    small = write_photo(tmp_path / "s.png", pair[1][:-4])
    proc = muon_ad("stylize-stereo", left, small, tmp_path / "a.png", tmp_path / "b.png",
                   "--model", card, check=False)
    assert proc.returncode == 2 and "differ in size" in proc.stderr
    assert not (tmp_path / "a.png").exists()
