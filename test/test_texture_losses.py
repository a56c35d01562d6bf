"""The texture synthesis loss terms (muon_ad_training.texture_losses) on small synthetic images:
what each statistic sees and that gradient descent lowers it. No teacher needed."""
import math

import torch

from muon_ad_training.texture_losses import (
    LineTargets, line_responses, line_statistics, pixel_neighbourhoods, quantiles_at, random_filter_grams,
    sliced_wasserstein,
)


def test_sliced_wasserstein_and_quantiles():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(500, 3, generator=gen)
    assert float(sliced_wasserstein(a, a[torch.randperm(500, generator=gen)], 16, gen)) < 1e-6
    assert float(sliced_wasserstein(a, a + 0.2, 16, gen)) > 0.05
    ref = torch.arange(11.0)[:, None]  # [11,1] sorted
    assert torch.equal(quantiles_at(ref, 11), ref)
    assert quantiles_at(ref, 3)[:, 0].tolist() == [0.0, 5.0, 10.0]  # first, median, last


def test_patch_neighbourhoods_wrap_and_shapes():
    img = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2 * 3, 4, 5)[:3][None]  # [1,3,4,5]
    assert pixel_neighbourhoods(img).shape == (3 * 4, 9)
    assert pixel_neighbourhoods(img, wrap=True).shape == (4 * 5, 9)
    p = pixel_neighbourhoods(img, wrap=True, patch=3)  # [20, 27]: every pixel's 3x3 patch, torus
    assert p.shape == (20, 27)
    # pixel (0, 4)'s patch: its right neighbour wraps to column 0, its lower-right one to (1, 0)
    row = p[4].view(3, 3, 3)  # [dy, dx, channel]
    assert torch.equal(row[0, 1], img[0, :, 0, 0]) and torch.equal(row[1, 1], img[0, :, 1, 0])
    assert pixel_neighbourhoods(img, patch=2).shape == (3 * 4, 12)


def test_random_filter_grams_see_structure_not_just_the_histogram():
    def stripes(phase: float, size: int = 64) -> torch.Tensor:  # a periodic texture: 16 px stripes
        y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        v = 0.5 + 0.3 * torch.sin(2 * torch.pi * (x + y + phase) / 16)
        return torch.stack([v, 0.8 * v, 1 - v])[None].float()  # [1,3,64,64]

    def loss(img, ex, seed=0, wrap=False):
        return float(random_filter_grams(img, ex, 3, 16, 5, wrap, torch.Generator().manual_seed(seed)))

    ex = stripes(0.0)
    assert loss(ex, ex) == 0.0  # the same filters on the same image
    shifted = stripes(5.0)  # the same texture, another layout
    flat = ex.flatten(2)[..., torch.randperm(64 * 64, generator=torch.Generator().manual_seed(1))].view_as(ex)
    gen = torch.Generator().manual_seed(2)
    noise = ex.mean(dim=(2, 3), keepdim=True) + 0.2 * torch.randn(1, 3, 64, 64, generator=gen)
    for seed in range(3):  # whatever filters are drawn: the same histogram without the stripes is far off
        assert loss(shifted, ex, seed) < 0.5 * loss(flat, ex, seed)
        assert loss(shifted, ex, seed) < 0.5 * loss(noise, ex, seed)
    # a torus: rolling a periodic image (by a multiple of the pyramid's 4 px grid) changes nothing
    # when the filters wrap around
    rolled = torch.roll(ex, (8, 12), dims=(2, 3))
    assert abs(loss(rolled, ex, wrap=True) - loss(ex, ex, wrap=True)) < 1e-5
    # a differentiable term that gradient descent lowers
    img = noise.clone().requires_grad_(True)
    opt = torch.optim.Adam([img], lr=0.02)
    first = loss(img.detach(), ex)
    for step in range(60):
        opt.zero_grad()
        random_filter_grams(img, ex, 3, 16, 5, False, torch.Generator().manual_seed(step)).backward()
        opt.step()
    assert loss(img.detach(), ex) < 0.5 * first


def _lines(size: int, segments: list, width: int = 1) -> torch.Tensor:
    """A dark grey image [1,3,size,size] with bright straight segments ((y0, x0), angle rad, length px)."""
    img = torch.full((1, 3, size, size), 0.3)
    for (y0, x0), theta, length in segments:
        for t in torch.linspace(0, length, 4 * length):
            y, x = round(y0 - float(t) * math.sin(theta)), round(x0 + float(t) * math.cos(theta))
            img[..., y % size:y % size + width, x % size:x % size + width] = 0.9
    return img


def test_line_responses_peak_at_the_lines_orientation():
    angles = 8
    for a in range(angles):  # one long line through the centre at each orientation of the bank
        theta = math.pi * a / angles
        img = _lines(96, [((48 + 30 * math.sin(theta), 48 - 30 * math.cos(theta)), theta, 60)])
        resp = line_responses(img, 24, angles, 2.0, wrap=True)  # [A, 96*96]
        assert resp.shape == (angles, 96 * 96)
        centre = resp.view(angles, 96, 96)[:, 46:51, 46:51].amax(dim=(1, 2))  # [A] near the line's middle
        assert int(centre.argmax()) == a
        assert float(centre[a]) > 2 * float(centre[(a + angles // 2) % angles])  # the perpendicular one
    # unwrapped: only positions whose whole segment lies inside the image
    plain = line_responses(img, 24, angles, 2.0, wrap=False)
    assert plain.shape[0] == angles and plain.shape[1] < 96 * 96
    # on a torus, rolling the image rolls the responses
    rolled = line_responses(torch.roll(img, (7, -13), dims=(2, 3)), 24, angles, 2.0, wrap=True)
    torch.testing.assert_close(rolled.view(angles, 96, 96), torch.roll(resp.view(angles, 96, 96), (7, -13), (1, 2)))


def test_line_statistics_tell_long_straight_lines_from_short_ones():
    gen = torch.Generator().manual_seed(0)

    def random_segments(count, length, seed):  # at random places, in the exemplar's three directions
        g = torch.Generator().manual_seed(seed)
        return [((int(torch.randint(0, 128, (1,), generator=g)), int(torch.randint(0, 128, (1,), generator=g))),
                 (0.35, 1.3, 2.0)[i % 3], length) for i in range(count)]

    exemplar = _lines(128, random_segments(12, 100, 0))  # long scratches
    targets = LineTargets.of(exemplar, (32,), 12, 2.0)
    assert targets.lengths == (32,)
    same_kind = _lines(128, random_segments(12, 100, 1))  # other long scratches
    short = _lines(128, random_segments(96, 12, 2))  # about as much bright line, in short pieces
    loss = lambda img: float(line_statistics(img, targets, 12, 2.0, True, gen))  # noqa: E731
    assert loss(same_kind) < 0.5 * loss(short)
    # a segment longer than the exemplar allows is skipped, not measured on a handful of positions
    assert LineTargets.of(exemplar, (120,), 12, 2.0).lengths == ()
    # differentiable, and gradient descent lowers it
    img = short.clone().requires_grad_(True)
    opt = torch.optim.Adam([img], lr=0.01)
    first = loss(short)
    for _ in range(60):
        opt.zero_grad()
        line_statistics(img, targets, 12, 2.0, True, gen).backward()
        opt.step()
    assert loss(img.detach()) < 0.6 * first
