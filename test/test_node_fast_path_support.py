"""The node fast path's helpers: the reusable Image payload and the malloc thresholds that keep frame
buffers mapped (docs/benchmarks.md, issue 16)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from muon_ad_ros.core import malloc_tuning
from muon_ad_ros.core.errors import ImageFormatError
from muon_ad_ros.core.image_codec import SUPPORTED_ENCODINGS, fields_to_rgb8, rgb8_to_fields
from muon_ad_ros.nodes import conversions as conv
from std_msgs.msg import Header


def _frame(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_image_from_a_payload_equals_the_fields_path(encoding):
    rgb = _frame()
    msg = conv.rgb_to_image(rgb, Header(frame_id="cam"), encoding, conv.PayloadBuffer())
    ref = rgb8_to_fields(rgb, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian)) == \
        (ref.height, ref.width, ref.encoding, ref.step, ref.is_bigendian)
    assert bytes(msg.data) == ref.data and msg.header.frame_id == "cam"


def test_a_payload_is_reused_and_follows_size_changes():
    payload = conv.PayloadBuffer()
    a = conv.rgb_to_image(_frame(seed=1), Header(), "rgb8", payload)
    first = a.data
    b = conv.rgb_to_image(_frame(seed=2), Header(), "rgb8", payload)
    assert b.data is first                                    # the same buffer, refilled
    assert np.array_equal(conv.image_to_rgb(b), _frame(seed=2))
    c = conv.rgb_to_image(_frame(30, 40, seed=3), Header(), "rgb8", payload)   # another size
    assert np.array_equal(conv.image_to_rgb(c), _frame(30, 40, seed=3))
    d = conv.rgb_to_image(_frame(seed=4), Header(), "rgb8")    # no payload: a buffer of its own
    assert d.data is not c.data and np.array_equal(conv.image_to_rgb(c), _frame(30, 40, seed=3))


def test_a_non_contiguous_frame_is_packed_row_by_row():
    big = _frame(64, 96, seed=5)
    view = big[8:56:2, 10:90]                                  # strided rows and a column window
    msg = conv.rgb_to_image(view, Header(), "rgb8", conv.PayloadBuffer())
    assert msg.step == 80 * 3
    assert np.array_equal(fields_to_rgb8(msg.height, msg.width, msg.encoding, msg.step,
                                         msg.is_bigendian, msg.data), view)


def test_a_bad_frame_is_refused_before_the_payload_changes():
    payload = conv.PayloadBuffer()
    good = conv.rgb_to_image(_frame(seed=6), Header(), "rgb8", payload)
    with pytest.raises(ImageFormatError):
        conv.rgb_to_image(np.zeros((4, 4), np.uint8), Header(), "rgb8", payload)
    assert np.array_equal(conv.image_to_rgb(good), _frame(seed=6))


def _in_fresh_python(code: str, env_extra: dict, *args: str) -> str:
    """stdout of ``code`` in a new interpreter without the caller's MALLOC_* tuning (plus env_extra)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_malloc_thresholds_apply_unless_the_user_set_them():
    code = ("from muon_ad_ros.core.malloc_tuning import keep_frame_buffers_mapped as k; "
            "print(k())")
    assert _in_fresh_python(code, {}) == "True"
    assert _in_fresh_python(code, {"MALLOC_TRIM_THRESHOLD_": "131072"}) == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_frame_buffers_stay_mapped_after_tuning():
    """The behaviour the tuning is for: a frame's buffers (an array, its bytes, a copy: the sizes a
    node allocates) are freed and allocated again every frame; untuned, glibc hands back pages the
    next frame must fault in again (~640 faults a frame here); tuned, the next frame reuses them."""
    code = ("import resource, sys, numpy as np\n"
            "from muon_ad_ros.core.malloc_tuning import keep_frame_buffers_mapped\n"
            "if sys.argv[-1] == 'tuned': keep_frame_buffers_mapped()\n"
            "def frames(n):\n"
            "    for _ in range(n):\n"
            "        a = np.ones(640 * 480 * 3, np.uint8); b = a.tobytes(); c = bytearray(b); del a, b, c\n"
            "frames(10)\n"
            "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "frames(60)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n")
    tuned, untuned = (int(_in_fresh_python(code, {}, mode)) for mode in ("tuned", "untuned"))
    assert untuned >= 60 * 100, untuned        # every frame faults its pages in again
    assert tuned < untuned / 10, (tuned, untuned)


def test_thresholds_are_large_enough_for_a_4k_frame():
    assert malloc_tuning.MMAP_THRESHOLD >= 3840 * 2160 * 3
