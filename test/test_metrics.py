"""evaluation.metrics: SSIM against skimage, edge agreement, flow warping error, flicker, latency."""
import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from muon_ad_ros.evaluation import metrics as M


@pytest.fixture(scope="module")
def astronaut():
    return cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)


def shifted_texture(dx, size=96):
    """A real texture (skimage brick) cropped at x offset dx: a camera panning by dx pixels."""
    tex = cv2.cvtColor(data.brick(), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(tex[100:100 + size, 100 + dx:100 + dx + size])


# -- SSIM ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("distort", ["blur", "noise", "gamma", "other_image"])
def test_ssim_matches_skimage(astronaut, distort):
    rng = np.random.default_rng(0)
    other = {
        "blur": lambda x: cv2.GaussianBlur(x, (7, 7), 2.0),
        "noise": lambda x: np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8),
        "gamma": lambda x: (255 * (x / 255.0) ** 2).astype(np.uint8),
        "other_image": lambda x: cv2.resize(data.coffee(), (160, 160)),
    }[distort](astronaut)
    a, b = M.luminance(astronaut), M.luminance(other)
    expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
    assert M.ssim(a, b) == pytest.approx(expected, abs=1e-5)
    assert -1.0 <= M.luminance_ssim(astronaut, other) < 1.0


def test_ssim_of_identical_frames_is_one(astronaut):
    assert M.luminance_ssim(astronaut, astronaut) == pytest.approx(1.0, abs=1e-9)


def test_ssim_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        M.ssim(np.zeros((20, 20)), np.zeros((20, 21)))


def test_luminance_matches_opencv_gray(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY) / 255.0
    assert np.abs(M.luminance(astronaut) - gray).max() < 1 / 255 + 1e-6


# -- edges --------------------------------------------------------------------------------------

def test_edge_agreement(astronaut):
    assert M.edge_agreement(astronaut, astronaut) == 1.0
    # an edge moved by one pixel (a brush stroke) still agrees; a flat output keeps no edge
    moved = np.roll(astronaut, 1, axis=1)
    assert M.edge_agreement(astronaut, moved) > 0.9
    assert M.edge_agreement(astronaut, np.full_like(astronaut, 128)) == 0.0
    blurred = cv2.GaussianBlur(astronaut, (9, 9), 3.0)
    assert 0.0 < M.edge_agreement(astronaut, blurred) < M.edge_agreement(astronaut, moved)
    flat = np.zeros((40, 40, 3), np.uint8)
    assert M.edge_agreement(flat, flat) == 1.0


# -- flow and warping error ---------------------------------------------------------------------

def test_flow_recovers_a_pan_and_warping_aligns_it():
    prev, cur = shifted_texture(0), shifted_texture(3)  # the scene moves 3 px left
    flow = M.flow_between(prev, cur)
    inner = flow.cur_to_prev[16:-16, 16:-16]
    # cur(x) = prev(x + 3): the flow from cur to prev points 3 px to the right
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.3)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.3)
    naive = float(((cur / 255.0 - prev / 255.0) ** 2).mean())
    assert M.warping_error(prev, cur, flow) < 0.2 * naive
    assert flow.mask.mean() > 0.8  # the texture is visible in both frames almost everywhere


def test_occlusion_mask_from_forward_backward_consistency():
    h, w = 20, 30
    right = np.zeros((h, w, 2), np.float32)
    right[..., 0] = 3.0
    # consistent pair: cur->prev +3 px, prev->cur -3 px; only the 3 columns whose source falls
    # outside the previous frame are masked
    mask = M.valid_flow_mask(right, -right)
    assert mask[:, : w - 3].all() and not mask[:, w - 3:].any()
    # inconsistent pair (both say +3 px): a round trip of 6 px, every pixel occluded
    assert not M.valid_flow_mask(right, right).any()


def test_warping_error_zero_for_static_and_larger_for_flicker():
    frame = shifted_texture(0)
    static = M.SequenceMetrics()
    for _ in range(5):
        static.add(frame, frame)
    s = static.summary()
    assert s["warping_error"] == pytest.approx(0.0, abs=1e-10)
    assert s["warping_error_input_floor"] == pytest.approx(0.0, abs=1e-10)
    assert s["occluded_fraction"] == 0.0 and s["flicker"] == 0.0

    flickering = M.SequenceMetrics()  # same static input, output brightness jumps every frame
    for i in range(5):
        out = cv2.convertScaleAbs(frame, alpha=1.0, beta=30 if i % 2 else 0)
        flickering.add(frame, out)
    f = flickering.summary()
    assert f["warping_error"] > 1e-3
    assert f["warping_error"] > s["warping_error"] + 1e-3
    assert f["warping_error_input_floor"] == pytest.approx(0.0, abs=1e-10)
    assert f["flicker"] > 0.05 and f["flicker_input"] == 0.0


def test_stable_stylization_of_a_pan_matches_the_input_floor():
    """A per-pixel (temporally stable) stylization moves with the scene: its warping error stays
    near the input's, while one with per-frame noise is far above it."""
    rng = np.random.default_rng(1)
    stable, noisy = M.SequenceMetrics(), M.SequenceMetrics()
    for dx in range(0, 12, 2):
        frame = shifted_texture(dx)
        styled = 255 - frame
        stable.add(frame, styled)
        noisy.add(frame, np.clip(styled + rng.normal(0, 25, frame.shape), 0, 255).astype(np.uint8))
    st, ny = stable.summary(), noisy.summary()
    assert st["warping_error"] == pytest.approx(st["warping_error_input_floor"], rel=0.05)
    assert ny["warping_error"] > 5 * st["warping_error"]


def test_warping_error_nan_when_everything_is_occluded():
    frame = shifted_texture(0)
    flow = M.FlowPair(np.zeros(frame.shape[:2] + (2,), np.float32), np.zeros(frame.shape[:2], bool))
    assert np.isnan(M.warping_error(frame, frame, flow))


# -- flicker, latency, accumulation -------------------------------------------------------------

def test_flicker():
    assert M.flicker([0.4, 0.6, 0.4, 0.6]) == pytest.approx(0.2)
    assert M.flicker([0.5, 0.5, 0.5]) == 0.0
    assert M.flicker([0.5]) == 0.0


def test_latency_stats():
    rng = np.random.default_rng(0)
    ms = rng.gamma(4.0, 5.0, size=500)
    st = M.latency_stats(ms)
    assert st["count"] == 500
    for q in (50, 95, 99):
        assert st[f"p{q}_ms"] == pytest.approx(np.percentile(ms, q))
    assert st["p50_ms"] <= st["p95_ms"] <= st["p99_ms"] <= st["max_ms"]
    assert st["fps"] == pytest.approx(1000.0 / ms.mean())
    empty = M.latency_stats([])
    assert empty["count"] == 0 and empty["p50_ms"] is None and empty["fps"] is None


def test_sequence_metrics_single_frame_and_downscale(astronaut):
    big = cv2.resize(astronaut, (1280, 1280))
    seq = M.SequenceMetrics(max_side=320)
    seq.add(big, big)
    s = seq.summary()
    assert s["frames"] == 1 and s["luminance_ssim"] == pytest.approx(1.0)
    assert s["warping_error"] is None and s["flicker"] is None
    assert M.limit_size(big, 320).shape == (320, 320, 3)
    with pytest.raises(ValueError):
        seq.add(big, big[:-1])
