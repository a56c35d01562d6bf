"""Stable Diffusion (1.5 family) teacher: UNet self-attention q/k/v of VAE latents.

Pipeline of `latent_features`: image -> VAE latent (mean of the posterior, times scaling_factor)
-> optionally noised to `timestep` with the scheduler -> one UNet forward at `timestep` with a
null text condition -> q/k/v of the chosen self-attention layers (attn1), captured by
`QKVCaptureProcessor` which computes exactly what diffusers' AttnProcessor2_0 computes.

Text conditioning: AD uses the null-text ("") embedding. We do not load CLIP (no `transformers`
here, and it is 123M parameters for one constant), so `null_text` defaults to zeros
[1, 77, cross_attention_dim]; pass the real CLIP("") embedding (e.g. computed once with the full
pipeline and saved with torch.save) as `null_text=` for a faithful SD teacher. Cross-attention
only reads it as keys/values, so a constant embedding keeps the self-attention features
image-driven either way.

Noise: the reference `optimize` (style transfer) feeds clean latents and only varies the timestep
embedding; `add_noise=True` instead noises every latent with a fixed seed (so the loss is a
deterministic function of the image, as a training loss must be).
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from muon_ad_ros.core.errors import ConfigError, ModelError

from .base import LayerQKV, Teacher, check_images

#: how many of the decoder's last self-attention layers AD uses: layers 10..15 of SD 1.5's 16
#: self-attention layers, i.e. up_blocks.2 and up_blocks.3 (reference: Controller(self_layers=(10, 16)))
PAPER_NUM_DECODER_LAYERS = 6


class QKVCaptureProcessor:
    """AttnProcessor2_0 that also stores q, k, v ([B, heads, N, d], after norm_q/norm_k) in
    `store[name]`. Gradients flow through the stored tensors (they are not detached)."""

    def __init__(self, name: str, store: dict):
        self.name, self.store = name, store

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, *args, **kwargs) -> Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, seq_len, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # [B,heads,N,d]
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        self.store[self.name] = (query, key, value)

        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                       dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def self_attention_layers(unet) -> list[str]:
    """Names of every self-attention (attn1) module of the UNet, in module order."""
    return [k[: -len(".processor")] for k in unet.attn_processors if k.endswith("attn1.processor")]


def paper_layers(unet, count: int = PAPER_NUM_DECODER_LAYERS) -> list[str]:
    """The AD paper's choice: the last `count` self-attention layers of the decoder (up_blocks)."""
    decoder = [n for n in self_attention_layers(unet) if n.startswith("up_blocks.")]
    if not decoder:
        raise ModelError("the UNet has no decoder self-attention layers")
    return decoder[-count:]


@contextlib.contextmanager
def capture_qkv(unet, layers: list[str]):
    """Install QKVCaptureProcessor on `layers` (attn1 module names); yields {name: (q, k, v)},
    filled by each UNet forward. The original processors are restored on exit, even on error."""
    originals = dict(unet.attn_processors)
    valid = set(self_attention_layers(unet))
    unknown = [n for n in layers if n not in valid]
    if unknown:
        raise ConfigError(f"not self-attention layers of this UNet: {unknown}; valid: {sorted(valid)}")
    store: dict = {}
    procs = dict(originals)
    for name in layers:
        procs[name + ".processor"] = QKVCaptureProcessor(name, store)
    unet.set_attn_processor(procs)
    try:
        yield store
    finally:
        unet.set_attn_processor(originals)


def _grid(n_tokens: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of a layer with n_tokens tokens in a UNet fed a [.., height, width] latent: the UNet
    halves the size (rounding up) per level, so try levels until the token count matches."""
    h, w = height, width
    for _ in range(8):
        if h * w == n_tokens:
            return h, w
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    raise ModelError(f"cannot place {n_tokens} tokens on a {height}x{width} latent")


class SDTeacher(Teacher):
    """Latent-diffusion teacher. `SDTeacher(unet, vae, scheduler)` or `SDTeacher.from_pretrained(..)`."""

    kind = "sd"

    def __init__(self, unet, vae, scheduler, layers: list[str] | None = None, timestep: int = 200,
                 add_noise: bool = False, noise_seed: int = 0, null_text: Tensor | None = None):
        super().__init__()
        self.unet, self.vae, self.scheduler = unet, vae, scheduler
        self.layers = list(layers) if layers is not None else paper_layers(unet)
        if not self.layers:
            raise ConfigError("SD teacher needs at least one layer")
        n_train = scheduler.config.num_train_timesteps
        if not 0 <= timestep < n_train:
            raise ConfigError(f"timestep must be in [0, {n_train}), got {timestep}")
        self.timestep, self.add_noise, self.noise_seed = int(timestep), add_noise, noise_seed
        dim = unet.config.cross_attention_dim
        if null_text is None:
            null_text = torch.zeros(1, 77, dim)
        if null_text.ndim != 3 or null_text.shape[0] != 1 or null_text.shape[-1] != dim:
            raise ConfigError(f"null_text must be [1, L, {dim}], got {tuple(null_text.shape)}")
        self.register_buffer("null_text", null_text.float(), persistent=False)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.freeze_()

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, torch_dtype=torch.float32, **kwargs) -> "SDTeacher":
        """Load unet/, vae/ and scheduler/ of a diffusers SD checkpoint (local folder or hub id)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        src = str(path_or_hub_id)
        try:
            unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet", torch_dtype=torch_dtype)
            vae = AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=torch_dtype)
            scheduler = DDIMScheduler.from_pretrained(src, subfolder="scheduler")
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load a Stable Diffusion checkpoint from {src}: {err}") from err
        return cls(unet, vae, scheduler, **kwargs)

    def encode(self, images: Tensor) -> Tensor:
        """[B,3,H,W] in [0,1] (H, W multiples of vae_scale * 2^levels) -> latent [B,4,H/8,W/8]."""
        check_images(images)
        dtype = next(self.vae.parameters()).dtype
        posterior = self.vae.encode(images.to(dtype) * 2.0 - 1.0).latent_dist
        return posterior.mean * self.vae.config.scaling_factor

    def decode(self, latent: Tensor) -> Tensor:
        image = self.vae.decode(latent / self.vae.config.scaling_factor).sample
        return (image * 0.5 + 0.5).clamp(0.0, 1.0)

    def latent_features(self, latent: Tensor) -> list[LayerQKV]:
        b, _, height, width = latent.shape
        t = torch.full((b,), self.timestep, dtype=torch.long, device=latent.device)
        if self.add_noise:
            gen = torch.Generator(device="cpu").manual_seed(self.noise_seed)
            noise = torch.randn(latent.shape, generator=gen).to(latent)
            latent = self.scheduler.add_noise(latent, noise, t)
        cond = self.null_text.to(latent.dtype).expand(b, -1, -1)
        with capture_qkv(self.unet, self.layers) as store:
            self.unet(latent, t, encoder_hidden_states=cond, return_dict=False)
        out = []
        for name in self.layers:
            q, k, v = store[name]
            h, w = _grid(k.shape[2], height, width)
            out.append(LayerQKV(name, q, k, v, h, w))
        return out

    def config_id(self) -> dict:
        return {**super().config_id(), "layers": self.layers, "timestep": self.timestep,
                "add_noise": self.add_noise, "noise_seed": self.noise_seed}
