"""Training data: content images (folders, video frames, skimage samples), style references, batches.

Reproducibility is by construction, not by loader state: the global batch of step ``s`` is a pure
function of (seed, s). Which content images, which style and every augmentation parameter are drawn
from ``torch.Generator``s seeded from (seed, s) and (seed, s, sample index), so

* a resumed run sees exactly the batches an uninterrupted run sees (no loader position to save);
* rank r of N takes samples [r*B/N, (r+1)*B/N) of the same global batch, each augmented exactly as in
  a single-process run, so N processes together compute the single-process batch.

Images are kept in memory as float tensors [3,h,w] in [0,1] with short side ``base_size`` (content)
or a ``style_size`` square (styles): the student's training sets are small (hundreds of images).
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from muon_ad_ros.core.errors import ConfigError

from .train_config import AugmentConfig, DataConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# ----------------------------------------------------------------------------- loading


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWx3/4 RGB -> float [3,H,W] in [0,1] (grey replicated, alpha dropped)."""
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * (255.0 if rgb.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0


def resize_short_side(img: torch.Tensor, size: int) -> torch.Tensor:
    """[3,h,w] -> short side ``size`` (antialiased bilinear)."""
    h, w = img.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(img[None], size=new, mode="bilinear", antialias=True, align_corners=False)[0]


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def read_image(path: str) -> torch.Tensor:
    """An image file or ``skimage:<name>`` as float [3,H,W] in [0,1]."""
    if path.startswith("skimage:"):
        return skimage_image(path.split(":", 1)[1])
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"cannot read image {path}")
    return to_tensor(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


_NOT_IMAGES = frozenset({"data_dir", "download_all", "file_hash", "lbp_frontal_face_cascade_filename"})


def skimage_image(name: str) -> torch.Tensor:
    """A scikit-image sample by name; anything that is not one 2-D image (a helper such as
    download_all, a missing download, a tuple, a 3-D volume) is a one-line ConfigError.
    ``motorcycle_left`` / ``motorcycle_right`` are the two views of ``stereo_motorcycle``."""
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return to_tensor(np.asarray(left if name == "motorcycle_left" else right))
    loader = getattr(skimage.data, name, None) if isinstance(name, str) else None
    if name not in getattr(skimage.data, "__all__", ()) or name in _NOT_IMAGES or not callable(loader):
        raise ConfigError(f"skimage.data has no image {name!r}")
    try:
        image = loader()
    except Exception as exc:  # noqa: BLE001 - e.g. a sample that needs a download (pooch, network)
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ConfigError(f"skimage.data.{name} cannot be loaded ({type(exc).__name__}: {reason})") from None
    shape = getattr(image, "shape", ())
    if not isinstance(image, np.ndarray) or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
        raise ConfigError(f"skimage.data.{name} is not a 2-D grey or colour image")
    return to_tensor(image)


def video_frames(path: str, every: int, max_frames: int) -> list[torch.Tensor]:
    """Every ``every``-th frame of a video (cv2.VideoCapture), at most ``max_frames``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    frames, index = [], 0
    try:
        while len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % every == 0:
                frames.append(to_tensor(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        cap.release()
    return frames


def _expand(patterns: list[str], base: Path) -> list[str]:
    out = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        p = p if p.is_absolute() else base / p
        matches = sorted(glob.glob(str(p)))
        if not matches:
            raise ConfigError(f"no file or folder matches {pattern!r} (resolved to {p})")
        out += matches
    return out


def load_content(cfg: DataConfig, base: Path = Path(".")) -> tuple[list[torch.Tensor], list[str]]:
    """All content images (short side ``cfg.base_size``) and a name for each, in a fixed order."""
    images, names = [], []
    for folder in _expand(cfg.folders, base):
        files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            images.append(read_image(str(f)))
            names.append(str(f))
    for video in _expand(cfg.videos, base):
        for i, frame in enumerate(video_frames(video, cfg.video_every, cfg.max_frames_per_video)):
            images.append(frame)
            names.append(f"{video}#{i * cfg.video_every}")
    for name in cfg.skimage:
        images.append(skimage_image(name))
        names.append(f"skimage:{name}")
    if not images:
        raise ConfigError("the data config yields no content image")
    return [resize_short_side(img, cfg.base_size) for img in images], names


def load_eval_content(cfg: DataConfig) -> list[torch.Tensor]:
    """The evaluation images (never trained on), prepared like the content."""
    return [resize_short_side(skimage_image(name), cfg.base_size) for name in cfg.eval_skimage]


def load_styles(cfg: DataConfig, base: Path = Path(".")) -> list[torch.Tensor]:
    """The style references [3,s,s] in config order (index = style index of the model)."""
    out = []
    for ref in cfg.styles:
        path = ref.path if ref.path.startswith("skimage:") else str(_expand([ref.path], base)[0])
        image = read_image(path)
        if ref.tile < 1:
            raise ConfigError(f"style {ref.name!r}: tile must be >= 1, got {ref.tile}")
        if ref.tile > 1:  # small GIMP-style patterns: tile instead of blowing up their texture
            image = image.repeat(1, ref.tile, ref.tile)
        out.append(resize_square(image, cfg.style_size))
    return out


# ----------------------------------------------------------------------------- augmentation


@dataclass
class CropParams:
    top: int
    left: int
    side: int
    flip: bool
    jitter: tuple[float, float, float]  # brightness, contrast, saturation factors


def draw_crop(gen: torch.Generator, h: int, w: int, aug: AugmentConfig) -> CropParams:
    u = torch.rand(6, generator=gen).tolist()
    lo, hi = aug.crop_scale
    side = max(16, int(min(h, w) * (lo + (hi - lo) * u[0])))
    top = int((h - side) * u[1])
    left = int((w - side) * u[2])
    j = aug.jitter
    factors = tuple(1.0 + j * (2 * x - 1) for x in u[3:6])
    flip = aug.hflip and bool(torch.rand(1, generator=gen).item() < 0.5)
    return CropParams(top, left, side, flip, factors)


def apply_crop(img: torch.Tensor, c: CropParams, size: int) -> torch.Tensor:
    """[3,h,w] -> [3,size,size]: crop, resize, optional horizontal flip (geometry only)."""
    patch = img[:, c.top:c.top + c.side, c.left:c.left + c.side]
    patch = resize_square(patch, size)
    return patch.flip(-1) if c.flip else patch


def color_jitter(img: torch.Tensor, factors: tuple[float, float, float]) -> torch.Tensor:
    """Brightness, contrast and saturation scaling of [3,H,W] in [0,1] (small: factors ~ 1)."""
    b, c, s = factors
    img = img * b
    mean = img.mean()
    img = (img - mean) * c + mean
    grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    img = (img - grey) * s + grey
    return img.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- batches


@dataclass
class Batch:
    content: torch.Tensor  # [b,3,r,r] in [0,1], augmented (what the student sees)
    clean: torch.Tensor  # [b,3,r,r] the same crops without colour jitter (reconstruction target)
    target: Optional[torch.Tensor]  # [b,3,r,r] cached teacher target of (content, style), same crops
    style: int  # style index shared by the batch
    style_weights: torch.Tensor  # [b,S] one-hot
    indices: list[int]  # content image indices (for logging)

    def chunks(self, n: int) -> list["Batch"]:
        """Split into n equal consecutive micro-batches (gradient accumulation)."""
        size = len(self.indices) // n
        if size * n != len(self.indices):
            raise ConfigError(f"a batch of {len(self.indices)} does not split into {n} micro-batches")

        def part(t, k):
            return None if t is None else t[k * size:(k + 1) * size]

        return [Batch(part(self.content, k), part(self.clean, k), part(self.target, k), self.style,
                      part(self.style_weights, k), self.indices[k * size:(k + 1) * size]) for k in range(n)]


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64-style), so (seed, step, i) never collide in practice."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


EVAL_STEP = 10**12  # steps from here on are evaluation batches: drawn from the evaluation images only


class BatchSource:
    """Global batch of step s = f(seed, s); each rank builds only its slice.

    ``contents`` are the training images followed by ``num_eval`` evaluation images: training steps
    draw from the first part only, evaluation steps (>= EVAL_STEP) from the last part only."""

    def __init__(self, contents: list[torch.Tensor], num_styles: int, cfg: DataConfig, seed: int,
                 targets: Optional[dict[tuple[int, int], torch.Tensor]] = None, num_eval: int = 0):
        if not 0 <= num_eval < len(contents):
            raise ConfigError(f"need training images besides the {num_eval} evaluation images")
        self.contents, self.num_styles, self.cfg, self.seed = contents, num_styles, cfg, seed
        self.num_train = len(contents) - num_eval
        self.targets = targets  # (content index, style index) -> [3,h,w] aligned with the content

    def plan(self, step: int) -> tuple[int, list[int]]:
        """(style index, content indices of the whole global batch) of a step."""
        gen = torch.Generator().manual_seed(_mix(self.seed, step))
        style = int(torch.randint(self.num_styles, (1,), generator=gen))
        evaluation = step >= EVAL_STEP and self.num_train < len(self.contents)
        first, count = (self.num_train, len(self.contents) - self.num_train) if evaluation else (0, self.num_train)
        idx = (first + torch.randint(count, (self.cfg.batch_size,), generator=gen)).tolist()
        return style, idx

    def batch(self, step: int, resolution: int, rank: int = 0, world_size: int = 1) -> Batch:
        b = self.cfg.batch_size
        if b % world_size:
            raise ConfigError(f"data.batch_size {b} is not divisible by the world size {world_size}")
        style, idx = self.plan(step)
        local = range(rank * b // world_size, (rank + 1) * b // world_size)
        content, clean, target = [], [], []
        for i in local:
            img = self.contents[idx[i]]
            gen = torch.Generator().manual_seed(_mix(self.seed, step, i))
            crop = draw_crop(gen, img.shape[1], img.shape[2], self.cfg.augment)
            geo = apply_crop(img, crop, resolution)
            clean.append(geo)
            content.append(color_jitter(geo, crop.jitter))
            if self.targets is not None:
                target.append(apply_crop(self.targets[(idx[i], style)], crop, resolution))
        weights = torch.zeros(len(local), self.num_styles)
        weights[:, style] = 1.0
        return Batch(torch.stack(content), torch.stack(clean), torch.stack(target) if target else None,
                     style, weights, [idx[i] for i in local])


def compute_targets(teacher, contents: list[torch.Tensor], styles: list[torch.Tensor], style_names: list[str],
                    target_cfg, cache_dir: Path, rank: int = 0, world_size: int = 1,
                    barrier=None) -> dict[tuple[int, int], torch.Tensor]:
    """Teacher targets of every (content image, style), from the disk cache or optimised now.

    Each whole content image (short side base_size) is stylised once per style by
    ``teacher_targets.optimize_target``; batches then crop the target exactly like the content. With
    several ranks, rank r computes the pairs p with p % world_size == r, then (after ``barrier``)
    everyone reads the cache, so no pair is optimised twice.
    """
    from .teacher_targets import TargetCache

    cache = TargetCache(cache_dir)
    pairs = [(c, s) for c in range(len(contents)) for s in range(len(styles))]
    for n, (c, s) in enumerate(pairs):
        if n % world_size == rank:
            cache.get_or_compute(teacher, contents[c][None], styles[s][None], style_names[s], target_cfg)
    if barrier is not None:
        barrier()
    return {(c, s): cache.get_or_compute(teacher, contents[c][None], styles[s][None], style_names[s],
                                         target_cfg)[0] for c, s in pairs}
