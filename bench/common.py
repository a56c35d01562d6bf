"""Shared helpers of the benchmark scripts: machine description, interleaved timing, JSON output."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "date": _dt.date.today().isoformat()}


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 20, warmup: int = 3) -> dict:
    """Median/p90 ms of each callable, runs interleaved so machine noise hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, xs in samples.items():
        xs.sort()
        out[name] = {"median_ms": statistics.median(xs), "p90_ms": xs[int(0.9 * (len(xs) - 1))], "n": len(xs)}
    return out


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def replace_section(text: str, heading: str, body: str) -> str:
    """Replace the '## heading' section (up to the next '## ') by body, or append it."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    except StopIteration:
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + body
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = lines[:start] + body.rstrip("\n").splitlines() + [""] + lines[end:]
    return "\n".join(new).rstrip("\n") + "\n"


def update_markdown_section(path: Path, heading: str, body: str) -> None:
    """Rewrite one '## heading' section of a results page (created if missing), leaving the rest."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    path.write_text(replace_section(text, heading, body))
