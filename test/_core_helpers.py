"""Shared fixtures-as-functions for core tests: a seeded tiny model bundle and real photos."""
from pathlib import Path

import numpy as np
import torch

from muon_ad_ros.core.bundle import write_bundle
from muon_ad_ros.core.student import StudentConfig, StudentNet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_photos(size=(96, 128)):
    """Real photographs every install has (scikit-image), resized to ``size`` (h, w)."""
    import cv2
    import skimage.data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(skimage.data, name)()
        out.append(cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    return out


def seeded_student(config=None, seed=0, perturb_styles=True):
    torch.manual_seed(seed)
    model = StudentNet(config or StudentConfig.tiny(num_styles=3)).eval()
    if perturb_styles:  # distinct per-style tables, as a trained model has
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "style_" in name:
                    p.add_(torch.randn_like(p) * 0.3)
    return model


def tiny_bundle(tmp_path, config=None, model_id="tiny"):
    model = seeded_student(config)
    card = write_bundle(model, tmp_path, model_id, card_extra={"untrained": True})
    return model, card


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
