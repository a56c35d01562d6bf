"""Teacher targets: per-image attention-distillation optimization, cached on disk.

`optimize_target` is the paper's style transfer: start from the content image (its latent for a
latent teacher), and descend L_tot = L_distill + lambda * L_content on that latent with Adam (as the
reference code) or Muon (the latent viewed as a [B*C, h*w] matrix: channels x pixels). The result,
decoded to an image, is the stylized target the student is distilled towards.

`TargetCache` stores targets under root/<style_id>/<key>.npy, key = sha256(content bytes + style id
+ teacher config + optimization config); writes go to a temporary file then os.replace, so a crash
or a concurrent writer never leaves a half-written target.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from muon_ad_ros.core.errors import ConfigError, ImageFormatError

from .losses import ADLossConfig, total_loss
from .teachers.base import Teacher, check_images, detach_layers

OPTIMIZERS = ("adam", "muon")


@dataclass
class TargetConfig:
    """Hyperparameters of one target optimization (defaults tuned for the mobilenet teacher at
    256 px on tubingen + starry_night, see docs/teachers.md)."""

    steps: int = 150
    lr: float = 0.02
    optimizer: str = "adam"  # "adam" | "muon"
    lambda_content: float = 0.25
    attn_scale: float = 1.0
    max_style_tokens: int | None = 4096
    seed: int = 0  # style-token subsampling

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.steps < 1 or self.lr <= 0 or self.lambda_content < 0:
            raise ConfigError(f"need steps >= 1, lr > 0, lambda_content >= 0; got {self}")

    def loss_config(self) -> ADLossConfig:
        return ADLossConfig(self.lambda_content, self.attn_scale, self.max_style_tokens)


def _make_optimizer(name: str, param: Tensor, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam([param], lr=lr)
    try:  # written alongside this module (training/muon.py); imported lazily
        from .muon import Muon
    except ImportError as err:
        raise ConfigError("optimizer='muon' needs muon_ad_training.muon.Muon") from err
    # match_rms_adamw: the orthogonalized update is rescaled to AdamW's RMS, so lr means the same
    # per-pixel step size as with Adam.
    return Muon([{"params": [param], "use_muon": True, "lr": lr, "lr_scale": "match_rms_adamw"}])


def optimize_target(teacher: Teacher, content: Tensor, style: Tensor, steps: int | None = None,
                    lr: float | None = None, optimizer: str | None = None,
                    lambda_content: float | None = None, config: TargetConfig | None = None,
                    callback: Callable[[int, dict], None] | None = None) -> Tensor:
    """Stylize `content` [B,3,H,W] with `style` [1 or B,3,Hs,Ws] (both in [0,1]) by AD optimization.

    Arguments given explicitly override `config`. `callback(step, parts)` sees the loss parts.
    Returns the stylized images [B,3,H,W] in [0,1], detached.
    """
    cfg = TargetConfig(**asdict(config)) if config is not None else TargetConfig()
    for key, val in dict(steps=steps, lr=lr, optimizer=optimizer, lambda_content=lambda_content).items():
        if val is not None:
            setattr(cfg, key, val)
    cfg.validate()
    check_images(content)
    check_images(style)
    loss_cfg = cfg.loss_config()
    gen = torch.Generator().manual_seed(cfg.seed)

    with torch.no_grad():
        style_layers = detach_layers(teacher.features(style))
        content_latent = teacher.encode(content)
        content_layers = None
        if cfg.lambda_content:
            content_layers = detach_layers(teacher.latent_features(content_latent))

    shape = content_latent.shape  # [B,C,h,w]
    # The optimized leaf is the latent seen as a [B*C, h*w] matrix (what Muon orthogonalizes);
    # Adam is elementwise, so the view changes nothing for it.
    param = content_latent.detach().clone().reshape(shape[0] * shape[1], -1).requires_grad_(True)
    opt = _make_optimizer(cfg.optimizer, param, cfg.lr)
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        target_layers = teacher.latent_features(param.view(shape))
        loss, parts = total_loss(target_layers, style_layers, content_layers, loss_cfg, gen)
        loss.backward()
        opt.step()
        teacher.project_latent_(param)
        if callback is not None:
            callback(step, {k: float(v) for k, v in parts.items()})
    with torch.no_grad():
        return teacher.decode(param.detach().view(shape)).detach()


# ----------------------------------------------------------------------------- cache


def content_digest(image: Tensor) -> str:
    """sha256 of an image tensor's float32 bytes and shape (the 'content bytes' of the key)."""
    arr = np.ascontiguousarray(image.detach().to(torch.float32).cpu().numpy())
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def config_digest(teacher: Teacher, cfg: TargetConfig) -> str:
    blob = json.dumps({"teacher": teacher.config_id(), "target": asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


_STYLE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class TargetCache:
    """Disk cache of teacher targets: root/<style_id>/<sha256>.npy (float32 [B,3,H,W])."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, content: Tensor, style_id: str, teacher: Teacher, cfg: TargetConfig) -> str:
        if not _STYLE_ID.match(style_id):
            raise ConfigError(f"style_id must match {_STYLE_ID.pattern} (it names a folder), "
                              f"got {style_id!r}")
        parts = (content_digest(content), style_id, config_digest(teacher, cfg))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def path(self, style_id: str, key: str) -> Path:
        return self.root / style_id / f"{key}.npy"

    def load(self, style_id: str, key: str) -> Tensor | None:
        path = self.path(style_id, key)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ImageFormatError(f"corrupt cached target {path}: {err}") from err
        return torch.from_numpy(arr)

    def save(self, style_id: str, key: str, target: Tensor) -> Path:
        path = self.path(style_id, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = np.ascontiguousarray(target.detach().to(torch.float32).cpu().numpy())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def get_or_compute(self, teacher: Teacher, content: Tensor, style: Tensor, style_id: str,
                       cfg: TargetConfig | None = None) -> Tensor:
        """The cached target of (content, style_id, teacher, cfg), computing and storing it on a miss."""
        cfg = cfg or TargetConfig()
        key = self.key(content, style_id, teacher, cfg)
        cached = self.load(style_id, key)
        if cached is not None:
            return cached.to(content.device)
        target = optimize_target(teacher, content, style, config=cfg)
        self.save(style_id, key, target)
        return target
