"""The teacher interface: images -> per-layer attention features (q, k, v).

Every teacher (a diffusion UNet, a CNN) is seen by the losses through one record, `LayerQKV`, so the
attention-distillation loss (losses.py) and the target optimizer (teacher_targets.py) never know
which network produced the features.

A teacher works in a *latent* space that it chooses: the diffusion teacher's latent is its VAE
latent, a pixel-space teacher's latent is the image itself. `features(images)` is
`latent_features(encode(images))`; the target optimizer optimizes the latent (as the Attention
Distillation paper does for Stable Diffusion) and maps it back with `decode`.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from muon_ad_ros.core.errors import ImageFormatError


@dataclass
class LayerQKV:
    """Self-attention inputs of one teacher layer.

    q, k, v: [B, heads, N, d] with N = height * width tokens in row-major order of the layer's
    feature map (height, width are kept so that losses can resize masks or subsample spatially).
    """

    name: str
    q: Tensor
    k: Tensor
    v: Tensor
    height: int
    width: int

    def __post_init__(self):
        if not (self.q.ndim == self.k.ndim == self.v.ndim == 4):
            raise ValueError(f"{self.name}: q, k, v must be [B, heads, N, d]")
        if self.k.shape[2] != self.height * self.width:
            raise ValueError(f"{self.name}: {self.k.shape[2]} tokens != {self.height}x{self.width}")


def check_images(images: Tensor) -> None:
    """Teachers take RGB float images [B, 3, H, W] in [0, 1]; anything else is a caller bug."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ImageFormatError(f"teacher input must be a [B,3,H,W] tensor, got {shape}")
    if not images.is_floating_point():
        raise ImageFormatError(f"teacher input must be float in [0,1], got {images.dtype}")


class Teacher(nn.Module, ABC):
    """A frozen network exposing self-attention q/k/v. Subclasses implement `latent_features`.

    Features are differentiable with respect to the input (the student's output flows through
    the teacher during distillation); the teacher's own weights never train.
    """

    #: short identifier, part of the cache key of teacher targets
    kind: str = "teacher"

    def encode(self, images: Tensor) -> Tensor:
        """Images [B,3,H,W] in [0,1] -> the latent the teacher computes features from."""
        check_images(images)
        return images

    def decode(self, latent: Tensor) -> Tensor:
        """Latent -> images [B,3,H,W] in [0,1] (the inverse of `encode`)."""
        return latent.clamp(0.0, 1.0)

    def project_latent_(self, latent: Tensor) -> None:
        """Keep an optimized latent valid after an optimizer step (pixel teachers clamp to [0,1])."""

    @abstractmethod
    def latent_features(self, latent: Tensor) -> list[LayerQKV]:
        """Latent -> q/k/v of every configured layer, in a fixed layer order."""

    def features(self, images: Tensor) -> list[LayerQKV]:
        """Images [B,3,H,W] in [0,1] -> q/k/v of every configured layer."""
        return self.latent_features(self.encode(images))

    def latent_features_and_maps(self, latent: Tensor, maps: tuple[str, ...]) -> tuple[list[LayerQKV], dict]:
        """q/k/v of every configured layer and the named feature maps [B,C,h,w], in one forward pass.
        Teachers without named maps support only ``maps=()``."""
        if maps:
            raise ValueError(f"the {self.kind} teacher exposes no feature maps (asked for {list(maps)})")
        return self.latent_features(latent), {}

    def features_and_maps(self, images: Tensor, maps: tuple[str, ...]) -> tuple[list[LayerQKV], dict]:
        return self.latent_features_and_maps(self.encode(images), tuple(maps))

    def config_id(self) -> dict:
        """Everything that changes the features; hashed into the teacher-target cache key.
        Subclasses add their options to this dict (kind + a fingerprint of the frozen weights)."""
        if "_weights_id" not in self.__dict__:  # weights are frozen: hash once
            self.__dict__["_weights_id"] = weights_fingerprint(self)
        return {"kind": self.kind, "weights": self.__dict__["_weights_id"]}

    def freeze_(self) -> "Teacher":
        """Eval mode and no weight gradients: a teacher is a fixed function of its input."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


def crop_layer(layer: LayerQKV, margin: int) -> LayerQKV:
    """The layer without its outer ``margin`` rings of tokens (q, k, v cut the same way)."""
    if margin <= 0:
        return layer
    h, w = layer.height - 2 * margin, layer.width - 2 * margin
    if h < 1 or w < 1:
        raise ValueError(f"{layer.name}: a {layer.height}x{layer.width} grid has no interior at margin {margin}")

    def cut(t: Tensor) -> Tensor:  # [B,heads,N,d] -> [B,heads,h*w,d]
        b, heads, _, d = t.shape
        grid = t.reshape(b, heads, layer.height, layer.width, d)[:, :, margin:margin + h, margin:margin + w]
        return grid.reshape(b, heads, h * w, d)

    return LayerQKV(layer.name, cut(layer.q), cut(layer.k), cut(layer.v), h, w)


@torch.no_grad()
def detach_layers(layers: list[LayerQKV]) -> list[LayerQKV]:
    """A copy of `layers` cut from the graph (style / content references are constants)."""
    return [LayerQKV(x.name, x.q.detach(), x.k.detach(), x.v.detach(), x.height, x.width) for x in layers]


@torch.no_grad()
def weights_fingerprint(module: nn.Module) -> str:
    """Short hash of a module's weights (names, shapes, sums and a strided sample of values), so
    that cached targets of two different checkpoints never collide. One pass over the weights."""
    h = hashlib.sha256()
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        flat = t.detach().reshape(-1).double().cpu()
        sample = flat[:: max(1, flat.numel() // 64)]
        h.update(f"{name}{tuple(t.shape)}{flat.sum().item():.9e}".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]
