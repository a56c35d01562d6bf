"""Temporal stabilisation (core/temporal.py): steadier video, no trails, resets on cuts.

Sequences are synthesised from a real photo (scikit-image): a window panning over it, with a
flat-coloured square crossing the view, so the true motion is known. The "stylizer" of the filter
tests is the input plus fresh noise every frame, the flicker a per-frame network adds.
"""
import cv2
import numpy as np
import pytest

from _core_helpers import tiny_bundle
from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_ros.core.temporal import TemporalConfig, TemporalFilter
from muon_ad_ros.evaluation.metrics import flow_between, warping_error

H, W = 120, 160
SQUARE = 28


def panning_sequence(n=12, pan=(2, 1), square_step=6, square_rgb=(250, 30, 200)):
    """n frames HxWx3 uint8: a window over the astronaut photo moving by ``pan`` px per frame, and
    a square moving right by ``square_step`` px per frame (its top-left x per frame is returned)."""
    from skimage import data

    photo = cv2.resize(data.astronaut(), (320, 320), interpolation=cv2.INTER_AREA)
    frames, xs = [], []
    for t in range(n):
        x0, y0 = 40 + pan[0] * t, 40 + pan[1] * t
        frame = photo[y0:y0 + H, x0:x0 + W].copy()
        sx = 10 + square_step * t
        frame[40:40 + SQUARE, sx:sx + SQUARE] = square_rgb
        frames.append(frame)
        xs.append(sx)
    return frames, xs


def flicker(frames, sigma=14.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        noise = cv2.GaussianBlur(rng.normal(0, sigma, f.shape).astype(np.float32), (5, 5), 0) * 2.5
        out.append(np.clip(f.astype(np.float32) + noise, 0, 255).astype(np.uint8))
    return out


def mean_warping_error(inputs, outputs):
    errs = [warping_error(a, b, flow_between(i, j))
            for i, j, a, b in zip(inputs, inputs[1:], outputs, outputs[1:])]
    return float(np.mean(errs))


def test_filter_cuts_the_warping_error_of_a_flickering_stylizer():
    frames, _ = panning_sequence()
    styl = flicker(frames)
    tf = TemporalFilter()
    out = [tf.apply(f, s) for f, s in zip(frames, styl)]
    off, on = mean_warping_error(frames, styl), mean_warping_error(frames, out)
    assert on <= 0.6 * off, (on, off)
    assert tf.stats.resets == 1 and tf.stats.scene_cuts == 0
    assert tf.stats.last_matched > 0.6


def test_a_moving_object_leaves_no_trail():
    """Where the square was one frame ago and is no longer, the output shows the background the
    stylizer paints there now, not a fading copy of the square."""
    frames, xs = panning_sequence()
    styl = flicker(frames)
    tf = TemporalFilter()
    out = [tf.apply(f, s) for f, s in zip(frames, styl)]
    square = np.array([250, 30, 200], np.float32)
    for t in range(3, len(frames)):
        vacated = out[t][44:40 + SQUARE - 4, xs[t - 1] + 2:xs[t] - 1].astype(np.float32)  # left by the square
        assert vacated.size
        dist_to_square = np.abs(vacated - square).mean(axis=-1)
        assert np.median(dist_to_square) > 60, f"frame {t}: the square's colour lingers where it left"
        now = styl[t][44:40 + SQUARE - 4, xs[t - 1] + 2:xs[t] - 1].astype(np.float32)
        assert np.abs(vacated - now).mean() < 12


def test_a_scene_cut_starts_over():
    frames, _ = panning_sequence(n=4)
    other = cv2.resize(np.ascontiguousarray(np.rot90(frames[0])), (W, H))[:, ::-1].copy()
    other = 255 - other
    tf = TemporalFilter()
    for f in frames:
        tf.apply(f, f)
    styl = flicker([other])[0]
    assert np.array_equal(tf.apply(other, styl), styl)
    assert tf.stats.scene_cuts == 1


def test_a_changed_key_or_size_starts_over():
    frames, _ = panning_sequence(n=3)
    styl = flicker(frames)
    tf = TemporalFilter()
    tf.apply(frames[0], styl[0], key="a")
    assert not np.array_equal(tf.apply(frames[1], styl[1], key="a"), styl[1])
    assert np.array_equal(tf.apply(frames[2], styl[2], key="b"), styl[2])
    small = cv2.resize(frames[0], (80, 60))
    assert np.array_equal(tf.apply(small, small, key="b"), small)


@pytest.mark.parametrize("kwargs", [{"blend": 1.0}, {"blend": -0.1}, {"flow_max_side": 4},
                                    {"dis_preset": "slow"}, {"min_matched": 2.0}, {"dis_finest_scale": -1},
                                    {"dis_finest_scale": 5}, {"dis_refine_iters": -1}])
def test_bad_config(kwargs):
    with pytest.raises(ConfigError):
        TemporalConfig(**kwargs)


def test_stylizer_option(tmp_path):
    _, card = tiny_bundle(tmp_path)
    plain = Stylizer.from_model(card, threads=1)
    steady = Stylizer.from_model(card, threads=1, temporal=True)
    frames, _ = panning_sequence(n=3)
    first = steady.stylize(frames[0])
    assert np.array_equal(first.image, plain.stylize(frames[0]).image)  # nothing to blend with yet
    assert "temporal" in first.timings and first.timings["total"] >= first.timings["temporal"]
    second = steady.stylize(frames[1])
    assert not np.array_equal(second.image, plain.stylize(frames[1]).image)
    steady.set_temporal(False)
    assert steady.temporal is None
    assert np.array_equal(steady.stylize(frames[2]).image, plain.stylize(frames[2]).image)
    steady.set_temporal(TemporalConfig(blend=0.5))
    assert steady.temporal.config.blend == 0.5


def test_flows_run_beside_each_other_and_the_thread_ends_with_the_filter():
    """The backward flow runs on the filter's worker thread; the result is the sequential one, and a
    filter that is dropped does not leave its thread behind."""
    import gc
    import threading

    frames, _ = panning_sequence(n=5)
    stylized = flicker(frames)
    tf = TemporalFilter()
    outs = [tf.apply(f, s) for f, s in zip(frames, stylized)]
    seq = TemporalFilter()
    seq._worker = _Inline()
    assert all(np.array_equal(a, seq.apply(f, s)) for a, f, s in zip(outs, frames, stylized))
    assert not all(np.array_equal(a, s) for a, s in zip(outs[1:], stylized[1:]))  # it did filter
    assert any(t.name.startswith("temporal_flow") for t in threading.enumerate())
    del tf, seq
    gc.collect()
    for t in [t for t in threading.enumerate() if t.name.startswith("temporal_flow")]:
        t.join(timeout=5)
    assert not any(t.name.startswith("temporal_flow") for t in threading.enumerate())


class _Inline:
    """Runs what is submitted at once, on the caller's thread (the sequential reference)."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

    def submit(self, fn, *args):
        return self._Done(fn(*args))
