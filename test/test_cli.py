"""`muon-ad` from the command line: stylize image/folder/video, info, and one-line user errors."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from _core_helpers import real_photos, tiny_bundle


def muon_ad(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "muon_ad_ros.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


def write_photo(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_stylize_one_image_keeps_its_size(tmp_path, card):
    src = write_photo(tmp_path / "in.png", real_photos((72, 100))[0])
    out = tmp_path / "out" / "styled.png"
    proc = muon_ad("stylize", src, out, "--model", card, "--style", "style1", "--strength", "0.7")
    assert "stylized 1 frame" in proc.stdout and "UNTRAINED" in proc.stdout
    img = cv2.imread(str(out))
    assert img.shape == (72, 100, 3) and not np.array_equal(img, cv2.imread(str(src)))


def test_stylize_a_folder_and_a_video(tmp_path, card):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, rgb in enumerate(real_photos((48, 64))[:3]):
        write_photo(folder / f"{i}.jpg", rgb)
    muon_ad("stylize", folder, tmp_path / "styled", "--model", card, "--resolution", "64x48")
    assert sorted(p.name for p in (tmp_path / "styled").iterdir()) == ["0.png", "1.png", "2.png"]

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for rgb in real_photos((48, 64)):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    proc = muon_ad("stylize", video, tmp_path / "out.avi", "--model", card)
    assert "stylized 4 frame" in proc.stdout
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_info_lists_styles_and_files(card):
    proc = muon_ad("info", card)
    assert "style0, style1, style2" in proc.stdout and "onnx_fp32" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["stylize", "missing.png", "o.png"], "input not found"),
    (["stylize", "{photo}", "o.png", "--style", "nope"], "unknown style"),
    (["stylize", "{photo}", "o.png", "--resolution", "big"], "--resolution"),
    (["stylize", "{photo}", "o.png", "--strength", "3"], "strength"),
    (["stylize", "{photo}", "o.png", "--model", "no_such_model"], "unknown model"),
    (["stylize", "{garbage}", "o.png"], "cannot read image"),
    (["info", "{garbage}"], "not a model"),
    (["build-engine", "--model", "{card}"], "TensorRT"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, card, args, message):
    photo = write_photo(tmp_path / "p.png", real_photos((32, 32))[0])
    garbage = tmp_path / "g.png"
    garbage.write_bytes(b"not an image")
    args = [a.format(photo=photo, garbage=garbage, card=card) for a in args]
    if "{card}" not in " ".join(args) and args[0] == "stylize" and "--model" not in args:
        args += ["--model", str(card)]
    proc = subprocess.run([sys.executable, "-m", "muon_ad_ros.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
