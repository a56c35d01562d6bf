"""The bundle that add_style writes: the output folder claimed before training, the export of the
grown student with a card that records the new style, and the one rename that publishes it.

Nothing is left at the destination unless the bundle is complete: the export goes to a hidden
``.<out>.partial-PID`` folder next to it, created before minutes of training (so an unwritable or
occupied destination fails at once), renamed into place at the end; folders of killed runs are
removed by the next run.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from muon_ad_ros.core.checkpoint import sha256_file
from muon_ad_ros.core.errors import ConfigError


def claim_output(out: Path) -> Path:
    """Create the hidden temporary folder next to ``out`` now (before minutes of training), so an
    unwritable or occupied destination fails at once with one line."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder (choose a new one)")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    _remove_stale(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        probe = tmp / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return tmp


def _remove_stale(out: Path) -> None:
    """Remove ``.<out>.partial-PID`` folders of add-style runs that were killed (PID gone)."""
    if not out.parent.is_dir():
        return
    for old in out.parent.glob(f".{out.name}.partial-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdecimal() and pid.isascii() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)


def publish(tmp: Path, out: Path) -> None:
    """Rename the finished temporary folder to ``out``: one rename (an empty ``out`` is replaced;
    one that was filled meanwhile is an error, never overwritten)."""
    try:
        os.replace(tmp, Path(out).expanduser())
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot move the finished bundle there ({exc.strerror or exc})") from None


def export_new_style(model, tmp, model_id, files, name, image, rgb, cfg, recipe, init, summary, objective, provenance,
                     resolution, data) -> Path:
    """Export the grown student into the claimed folder `tmp` as a bundle whose card records the new
    style: its reference image (name, sha256, size, provenance), the base model it was added to and how
    it was trained; the precisions are the base's (INT8 from the base's calibration). Returns the card."""
    from .export import export_bundle
    from .style_onnx import add_int8_from_base

    image = Path(image).expanduser()
    base_card = files.card
    added = list(base_card.get("added_styles", [])) + [{
        "name": name, "index": model.config.num_styles - 1,
        "reference": {"file": image.name, "sha256": sha256_file(image), "size": [rgb.shape[1], rgb.shape[0]],
                      "provenance": provenance or "supplied by the user (licence not recorded)", "tile": cfg.tile},
        "base_model": {"id": files.id, "card_sha256": sha256_file(files.card_path) if files.card_path else None,
                       "weights_sha256": sha256_file(files.file_for("weights"))},
        "training": {"init_from": init, **summary, "lr": cfg.lr, "resolution": resolution,
                     "coarse": {"fraction": cfg.coarse_fraction, "scale": cfg.coarse_scale},
                     "imitate_fraction": cfg.imitate_fraction if recipe.imitate_weights is not None else 0.0,
                     "batch_size": data.batch_size, "minutes": cfg.minutes, "seed": cfg.seed,
                     "loss_weights": dataclasses.asdict(recipe.weights), "lambda_content": recipe.lambda_content,
                     "recipe": recipe.source, "teacher": "mobilenet",
                     "content": [n.split("/")[-1] for n in objective.content_names]},
    }]
    extra = {"base_model": files.id, "added_styles": added,
             "style_references": list(base_card.get("style_references", [])) + [str(image)],
             "provenance": {**base_card.get("provenance", {}),
                            f"style_{name}": provenance or "supplied by the user (licence not recorded)"},
             "description": f"{files.id} with style {name!r} added by muon-ad add-style "
                            "(existing styles bit-identical to the base)"}
    wanted = [p for p in cfg.precisions if p == "fp32" or p in base_card.get("precisions", cfg.precisions)]
    # parity at 320 px, not 512: the old styles are the base's bytes; this checks the new one, fast
    card = export_bundle(model, tmp, model_id, card_extra=extra, precisions=[p for p in wanted if p != "int8"],
                         latency_runs=0, strict=False, tolerances=base_card.get("tolerances"),
                         parity_max_side=320)
    if "int8" in wanted and "onnx_int8" in files.files:
        add_int8_from_base(card, model, files, model_id)
    return card
