"""The teacher's border handling (student_loss.TeacherView): the mobilenet zero-pads its convs, so
without care its border tokens have larger norms and soak up the cross-attention of the AD loss (the
student then learns to paint the style image's edge). Measured here on real photos (scikit-image)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from muon_ad_training.student_loss import TeacherView
from muon_ad_training.teachers.base import crop_layer
from muon_ad_training.teachers.mobilenet import MobileNetTeacher
from muon_ad_training.train_config import LossConfig

skimage_data = pytest.importorskip("skimage.data")


def image(name: str, size: int = 256) -> torch.Tensor:
    rgb = np.asarray(getattr(skimage_data, name)())[..., :3]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def ring_mass(target, style) -> tuple[float, float]:
    """(share of the cross-attention mass on the style's outermost token ring, that ring's area share)."""
    logits = target.q[0, 0] @ style.k[0, 0].T / style.k.shape[-1] ** 0.5  # [Nt, Ns]
    probs = logits.softmax(dim=-1).mean(dim=0).reshape(style.height, style.width)
    ring = torch.ones(style.height, style.width, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    return float(probs[ring].sum()), float(ring.float().mean())


@pytest.fixture(scope="module")
def teacher():
    return MobileNetTeacher()


def test_border_tokens_no_longer_take_the_cross_attention(teacher):
    content, style = image("chelsea"), image("astronaut")
    with torch.no_grad():
        raw_t, raw_s = teacher.features(content)[0], teacher.features(style)[0]  # stride-8 tap
        view = TeacherView(teacher, LossConfig())
        fixed_t, fixed_s = view(content)[0][0], view(style)[0][0]
    raw, raw_area = ring_mass(raw_t, raw_s)
    fixed, fixed_area = ring_mass(fixed_t, fixed_s)
    assert raw > 3 * raw_area  # the defect: the zero-padded border draws attention out of proportion
    assert fixed < 1.5 * fixed_area  # reflect padding + dropped ring: about its share of the area
    assert fixed < raw / 3


def test_view_crops_the_padding_exactly(teacher):
    x = image("coffee", 128)
    cfg = LossConfig(teacher_pad=16, teacher_ring=0)
    layers, maps = TeacherView(teacher, cfg)(x, ("expanded_conv_3/expand",))
    assert [(layer.height, layer.width) for layer in layers] == [(16, 16), (8, 8)]  # strides 8, 16
    assert maps["expanded_conv_3/expand"].shape[-2:] == (32, 32)  # stride 4
    ringed = TeacherView(teacher, LossConfig(teacher_pad=16, teacher_ring=1))(x)[0]
    assert [(layer.height, layer.width) for layer in ringed] == [(14, 14), (6, 6)]
    assert torch.equal(ringed[0].q, crop_layer(layers[0], 1).q)
