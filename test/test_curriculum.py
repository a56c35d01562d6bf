"""Curriculum as data: phase lookup, schedules, strict YAML configs, seeded batches, loss pieces."""
from pathlib import Path

import numpy as np
import pytest
import torch

from _training_helpers import REPO, SMOKE
from muon_ad_ros.core.errors import ConfigError
from muon_ad_training.curriculum import LR_FLOOR, TrainingSchedule, lambda_at, lr_multiplier
from muon_ad_training.data import BatchSource
from muon_ad_training.student_loss import attention_kl, color_loss, resample_attention, teacher_attention
from muon_ad_training.teachers.base import LayerQKV
from muon_ad_training.train_config import (DataConfig, LambdaSchedule, PhaseConfig, StyleRef,
                                           config_from_dict, load_config, read_yaml)


def schedule(*steps):
    return TrainingSchedule([PhaseConfig(name=f"p{i}", steps=n) for i, n in enumerate(steps)])


def test_lookup_at_phase_boundaries():
    s = schedule(10, 20, 5)
    assert s.total_steps == 35 and s.boundaries() == [0, 10, 30]
    cases = {0: ("p0", 0.0), 9: ("p0", 0.9), 10: ("p1", 0.0), 29: ("p1", 19 / 20),
             30: ("p2", 0.0), 34: ("p2", 0.8)}
    for step, (name, t) in cases.items():
        phase, progress = s.lookup(step)
        assert phase.name == name and progress == pytest.approx(t)
        assert 0.0 <= progress < 1.0
    for bad in (-1, 35):
        with pytest.raises(ConfigError, match="outside the schedule"):
            s.lookup(bad)


def test_one_step_phase_and_every_step_maps_to_exactly_one_phase():
    s = schedule(1, 3, 1)
    names = [s.lookup(i)[0].name for i in range(s.total_steps)]
    assert names == ["p0", "p1", "p1", "p1", "p2"]
    with pytest.raises(ConfigError):
        schedule(3, 0)


def test_lambda_and_lr_schedules():
    lin, cos = LambdaSchedule(1.0, 0.25, "linear"), LambdaSchedule(1.0, 0.25, "cosine")
    assert lambda_at(lin, 0.0) == 1.0 and lambda_at(lin, 0.5) == pytest.approx(0.625)
    assert lambda_at(cos, 0.0) == pytest.approx(1.0) and lambda_at(cos, 0.999999) == pytest.approx(0.25)
    assert lambda_at(LambdaSchedule(0.3, 9.0, "constant"), 0.7) == 0.3
    p = PhaseConfig(name="x", steps=10, warmup=0.2, cooldown=0.5, lr_scale=2.0)
    assert lr_multiplier(p, 0.0) < 0.1 and lr_multiplier(p, 0.3) == 2.0
    assert lr_multiplier(p, 0.5) == 2.0
    assert lr_multiplier(p, 0.99) == pytest.approx(2.0 * (LR_FLOOR + 0.018), abs=0.01)


def test_strict_config_names_the_unknown_key():
    data = read_yaml(SMOKE)
    data["phases"][1]["weigths"] = {"ad": 1.0}
    with pytest.raises(ConfigError, match=r"phases\[1\].*'weigths'.*did you mean 'weights'"):
        config_from_dict(data)
    data = read_yaml(SMOKE)
    data["optim"]["muon_lr"] = "fast"
    with pytest.raises(ConfigError, match="optim.muon_lr"):
        config_from_dict(data)
    data = read_yaml(SMOKE)
    data["phases"][2]["prune"]["target_sparsity"] = 1.5
    with pytest.raises(ConfigError, match=r"phases\[2\].*prune"):
        config_from_dict(data)


@pytest.mark.parametrize("name", ["smoke.yaml", "default.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "config" / "train" / name)
    assert [p.name for p in cfg.phases] == ["content", "distill", "compress"]
    content, distill, compress = cfg.phases
    assert content.resolution <= distill.resolution and content.optimizer == "adamw"
    assert distill.optimizer == "muon" and distill.lambda_content.start > distill.lambda_content.end
    assert compress.prune is not None and compress.prune.target_sparsity > 0
    assert cfg.student_config().style_names == [s.name for s in cfg.data.styles]


def test_extends_merges_mappings(tmp_path: Path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {SMOKE}\nseed: 7\noptim: {{muon_lr: 0.05}}\n")
    cfg = load_config(child)
    assert cfg.seed == 7 and cfg.optim.muon_lr == 0.05
    assert cfg.optim.adamw_lr == load_config(SMOKE).optim.adamw_lr


def _source(seed=0, batch=4):
    gen = torch.Generator().manual_seed(123)
    contents = [torch.rand(3, 40, 56, generator=gen), torch.rand(3, 48, 48, generator=gen)]
    return BatchSource(contents, 3, DataConfig(batch_size=batch), seed)


def test_batches_are_a_function_of_seed_and_step_and_ranks_split_the_global_batch():
    a, b = _source().batch(5, 32), _source().batch(5, 32)
    assert torch.equal(a.content, b.content) and a.style == b.style
    assert a.content.shape == (4, 3, 32, 32) and float(a.content.min()) >= 0 and float(a.content.max()) <= 1
    assert not torch.equal(a.content, _source().batch(6, 32).content)
    assert not torch.equal(a.content, _source(seed=1).batch(5, 32).content)
    halves = [_source().batch(5, 32, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([h.content for h in halves]), a.content)
    assert torch.equal(torch.cat([h.style_weights for h in halves]), a.style_weights)
    assert a.style_weights.sum(1).eq(1).all()
    with pytest.raises(ConfigError, match="divisible"):
        _source(batch=3).batch(0, 32, rank=0, world_size=2)


def test_resample_attention_keeps_rows_distributions_and_identity_on_same_grid():
    attn = torch.rand(2, 64, 64).softmax(-1)
    assert torch.equal(resample_attention(attn, (8, 8), (8, 8)), attn)
    small = resample_attention(attn, (8, 8), (4, 4))
    assert small.shape == (2, 16, 16)
    torch.testing.assert_close(small.sum(-1), torch.ones(2, 16))
    # A uniform map stays uniform; attention to one token stays on the pooled cell holding it.
    uniform = resample_attention(torch.full((1, 64, 64), 1 / 64), (8, 8), (4, 4))
    torch.testing.assert_close(uniform, torch.full((1, 16, 16), 1 / 16))
    onehot = torch.zeros(1, 64, 64)
    onehot[..., 9] = 1.0  # key (1, 1) of the 8x8 grid -> cell (0, 0) of the 4x4 grid
    assert resample_attention(onehot, (8, 8), (4, 4))[0, :, 0].eq(1).all()


def test_attention_kl_and_colour_loss():
    q = torch.randn(2, 1, 16, 8)
    t = teacher_attention(LayerQKV("l", q, q, q, 4, 4))
    assert attention_kl(t, t).abs() < 1e-6 and attention_kl(t, torch.full_like(t, 1 / 16)) > 0
    x = torch.rand(2, 3, 16, 16)
    assert color_loss(x, x) == 0 and color_loss(x * 0.5, x) > 0


def test_content_from_folders_and_every_kth_video_frame(tmp_path: Path):
    cv2 = pytest.importorskip("cv2")
    from muon_ad_training.data import load_content, load_styles

    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(10):  # frame i is a flat grey of level 20 * i (BGR)
        writer.write(np.full((48, 64, 3), 20 * i, dtype=np.uint8))
    writer.release()
    cfg = DataConfig(folders=["photos"], videos=["*.avi"], video_every=3, skimage=["coffee"], base_size=32,
                     styles=[])
    images, names = load_content(cfg, base=tmp_path)
    assert len(images) == 2 + 4 + 1  # two photos, frames 0, 3, 6, 9, one skimage photo
    assert names[2:6] == [f"{video}#{k}" for k in (0, 3, 6, 9)] and names[-1] == "skimage:coffee"
    assert all(min(img.shape[1:]) == 32 and img.shape[0] == 3 for img in images)
    levels = [float(img.mean()) * 255 for img in images[2:6]]
    assert levels == pytest.approx([0, 60, 120, 180], abs=4)  # the k-th frames, in order (MJPG is lossy)
    with pytest.raises(ConfigError, match="no file or folder matches"):
        load_content(DataConfig(folders=["missing"]), base=tmp_path)
    with pytest.raises(ConfigError, match="no image"):
        load_styles(DataConfig(styles=[StyleRef("x", "skimage:not_a_photo")]))


def stand_in_data(cfg: DataConfig, base: Path) -> None:
    """What ``cfg`` references under ``base``, made from scikit-image photos: two photos in each
    folder, a 30-frame video of the built-in sample for each video pattern, each style image."""
    import cv2

    from _core_helpers import real_photos
    from muon_ad_ros.core.frame_sources import SampleSource

    photos = [cv2.cvtColor(p, cv2.COLOR_RGB2BGR) for p in real_photos((120, 160))]
    for folder in cfg.folders:
        (base / folder).mkdir(parents=True)
        for i, bgr in enumerate(photos[:2]):
            cv2.imwrite(str(base / folder / f"photo{i}.jpg"), bgr)
    for pattern in cfg.videos:
        video = base / pattern.replace("*", "sample")
        video.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15, (160, 120))
        for frame, _ in zip(SampleSource(160, 120, frames_per_image=30).frames(), range(30)):
            writer.write(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        writer.release()
    for i, ref in enumerate(r for r in cfg.styles if not r.path.startswith("skimage:")):
        (base / ref.path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(base / ref.path), photos[i % len(photos)])


def test_default_config_data_loads(tmp_path):
    """config/train/default.yaml's data (photos, videos and art in ../shared/data, scikit-image
    photos) resolves on the shared data when it is there; without it, on a stand-in tree made from
    scikit-image photos at the same relative paths, where it also loads: content and styles."""
    from _shared import DATA
    from muon_ad_training.data import _expand, load_content, load_styles

    cfg = load_config(REPO / "config" / "train" / "default.yaml")
    base = REPO / "config" / "train"
    if not DATA.is_dir():
        base = tmp_path / "repo" / "config" / "train"   # ../../../shared/data -> tmp_path/shared/data
        stand_in_data(cfg.data, base)
    assert _expand(cfg.data.folders, base) and len(_expand(cfg.data.videos, base)) >= 1
    for ref in cfg.data.styles:
        assert ref.path.startswith("skimage:") or _expand([ref.path], base)
    if base.is_relative_to(tmp_path):  # the real data set is too big to load in a unit test
        images, names = load_content(cfg.data, base)
        assert len(images) == 2 + 2 + len(cfg.data.skimage)      # photos, video frames 0 and 15, skimage
        assert all(img.shape[0] == 3 and min(img.shape[1:]) == cfg.data.base_size for img in images)
        styles = load_styles(cfg.data, base)
        assert len(styles) == len(cfg.data.styles)
        assert all(tuple(st.shape) == (3, cfg.data.style_size, cfg.data.style_size) for st in styles)
