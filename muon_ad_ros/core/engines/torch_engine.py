"""PyTorch reference engine: runs the safetensors checkpoint directly (CPU, or CUDA when asked)."""
from __future__ import annotations

import numpy as np
import torch

from muon_ad_ros.core.checkpoint import load_student
from muon_ad_ros.core.engines.base import Engine
from muon_ad_ros.core.errors import EngineError
from muon_ad_ros.core.student import StudentNet


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model: StudentNet, precision: str = "fp32", device: str = "cpu"):
        super().__init__(model.config.num_styles)
        if precision not in ("fp32", "fp16"):
            raise EngineError(f"torch engine supports fp32 and fp16, not {precision}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError("torch engine: CUDA requested but torch.cuda.is_available() is False")
        if precision == "fp16" and not device.startswith("cuda"):
            raise EngineError("torch engine: fp16 needs a CUDA device (CPU half convolutions are slow)")
        self.precision = precision
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.eval().to(self.device, self.dtype)

    @classmethod
    def from_checkpoint(cls, path, precision: str = "fp32", device: str = "cpu") -> "TorchEngine":
        return cls(load_student(path), precision=precision, device=device)

    @torch.inference_mode()
    def _run(self, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(image).to(self.device, self.dtype)
        w = torch.from_numpy(style_weights).to(self.device, self.dtype)
        return self.model(x, w).float().cpu().numpy()
