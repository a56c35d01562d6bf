"""``muon-ad-train --config config/train/<name>.yaml [--resume [CHECKPOINT]]``: run the curriculum.

Single process:   muon-ad-train --config config/train/smoke.yaml
Several:          torchrun --nproc_per_node 2 -m muon_ad_training.cli --config ... (DDP + DistributedMuon)

At the end of a complete run, rank 0 exports the student as a model bundle through training/export.py
(masked heads removed, ONNX FP32/FP16/INT8 with parity checks, model card with the training summary)
into ``<output_dir>/export``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from muon_ad_ros.core.errors import MuonAdError

from .distributed import setup, teardown
from .train_config import load_config
from .trainer import Trainer


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="muon-ad-train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="training YAML (config/train/<name>.yaml)")
    ap.add_argument("--resume", nargs="?", const=True, default=False,
                    help="continue from the latest checkpoint of output_dir (or the given checkpoint folder)")
    ap.add_argument("--output-dir", help="override output_dir of the config")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override device of the config")
    ap.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many total steps")
    ap.add_argument("--no-export", action="store_true", help="skip the final export")
    return ap.parse_args(argv)


def export_final(trainer: Trainer, summary: dict, base_dir: Path = Path(".")) -> Path:
    """The bundle of the trained student through training/export.py (masked heads are removed
    structurally, ONNX per precision, parity checked); the card records the run, with its data
    paths relative to the data root (export.card_data_paths): no machine's absolute path."""
    from .export import card_data_paths, export_bundle

    cfg = trainer.cfg
    names = list(trainer.content_names)
    style_paths = [s.path for s in cfg.data.styles]
    data_root, relative = card_data_paths(names + style_paths, base_dir)
    card_extra = {
        "training": {"steps": summary["steps"], "phase_evals": summary["phase_evals"],
                     "phase_losses": summary["phase_losses"], "teacher": cfg.teacher.kind, "seed": cfg.seed,
                     "config": cfg.to_dict()},
        "data_root": data_root,  # relative to the training config's folder
        "data": [{"use": "training_content", "images": relative[:len(names)]},
                 {"use": "styles", "images": {s.name: p for s, p in zip(cfg.data.styles, relative[len(names):])}}],
        "style_references": [s.path for s in cfg.data.styles],
    }
    if cfg.export.provenance:
        card_extra["provenance"] = cfg.export.provenance
    # INT8 calibration on real frames of the training content (what the model will see), not on the
    # default handful of sample photos; named by their data-root-relative paths in the card.
    step = max(1, len(names) // cfg.export.calibration_frames)
    calibration = {relative[i]: (trainer.source.contents[i].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype("uint8")
                   for i in range(0, len(names), step)}
    return export_bundle(trainer.model, Path(cfg.output_dir) / "export", cfg.export.model_id,
                         calibration_images=calibration, image_licences={k: "see provenance" for k in calibration},
                         card_extra=card_extra, precisions=cfg.export.precisions,
                         latency_runs=cfg.export.latency_runs, strict=cfg.export.strict,
                         tolerances=cfg.export.tolerances or None)


def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in (("output_dir", args.output_dir), ("device", args.device)) if v}
    try:
        cfg = load_config(args.config, overrides)
        env = setup(cfg.device)
        try:
            trainer = Trainer(cfg, env, base_dir=Path(args.config).resolve().parent)
            summary = trainer.run(resume=args.resume, max_steps=args.max_steps)
            done = summary["steps"] == trainer.schedule.total_steps
            if env.is_main:
                if done and cfg.export.enabled and not args.no_export:
                    summary["card"] = str(export_final(trainer, summary, Path(args.config).resolve().parent))
                print(json.dumps(summary, indent=2))
            env.barrier()  # ranks tear down together (an early gloo teardown can abort a busy peer)
        finally:
            teardown()
    except MuonAdError as exc:
        print(f"muon-ad-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
