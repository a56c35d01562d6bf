"""Before/after of the node fast path (issue 16), for bench_node.py --compare.

    (1) stages, in one process, interleaved frame by frame: the node's per-frame work (Image ->
        RGB, Stylizer, RGB -> Image message) with
          before: the float model file, numpy conversions, onnxruntime's default session options
          after:  the uint8 model file (conversions in the graph, IO binding), SessionConfig()
        Ratios are the result; absolute ms move 2x with the load of this shared machine.
    (2) over DDS: fresh stylize_node processes at 15 Hz, before (model_io:=float) and after
        (model_io:=auto) alternating, each with its VmRSS sampled; plus start-up to first frame.

The model is config/stylize.yaml's (the default); when its card lists no uint8 variant, one is
written next to a copy of the card in a temporary folder (core/uint8_io.py), so (1) and (2) can
run on any float model.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO

STAGES = ("decode", "preprocess", "inference", "postprocess", "encode")
NODE_WORK = ("decode", "preprocess", "postprocess", "encode")


def model_with_uint8(model: str = "default") -> tuple[Path, bool]:
    """(card path listing uint8 variants, whether they had to be made here)."""
    from muon_ad_ros.core.bundle import io_descriptions, uint8_variants
    from muon_ad_ros.core.integrity import sha256_file
    from muon_ad_ros.core.model_store import resolve_model

    files = resolve_model(model)
    if any(r.endswith("_u8") for r in files.files):
        return files.card_path, False
    tmp = Path(tempfile.mkdtemp(prefix="bench_u8_"))
    card = dict(files.card)
    local = {}
    for role, path in files.files.items():
        local[role] = tmp / path.name
        (local[role]).symlink_to(path)
    local.update(uint8_variants({r: p for r, p in local.items()}))
    card["files"] = {r: {"path": p.name, "sha256": sha256_file(p)} for r, p in local.items()}
    card["io"] = io_descriptions(local)
    card_path = tmp / f"{card['id']}.card.json"
    card_path.write_text(json.dumps(card))
    return card_path, True


def stages(card: Path, frames: list[np.ndarray], repeats: int, threads_before: int = 0) -> dict:
    """Per-stage ms of the node's frame work, before and after, interleaved frame by frame."""
    from std_msgs.msg import Header

    from muon_ad_ros.core.engines.onnx_engine import SessionConfig
    from muon_ad_ros.core.stylizer import Stylizer
    from muon_ad_ros.nodes import conversions as conv

    header = Header(frame_id="camera")
    msgs = [conv.rgb_to_image(f, header) for f in frames]
    # the session as it was: onnxruntime's defaults (spinning workers, memory pattern on)
    legacy = SessionConfig(threads=threads_before, spin=True, mem_pattern=True)
    configs = {"before": Stylizer.from_model(card, io="float", session=legacy),
               "float_file_new_session": Stylizer.from_model(card, io="float"),  # what the session alone gives
               "after": Stylizer.from_model(card, io="auto")}
    times = {name: {s: [] for s in STAGES + ("node_work", "total")} for name in configs}
    outputs = {}
    for i in range(repeats + 3):
        msg = msgs[i % len(msgs)]
        order = list(configs.items())
        for name, stylizer in order[i % len(order):] + order[:i % len(order)]:  # rotate who goes first
            t0 = time.perf_counter()
            rgb = conv.image_to_rgb(msg)
            t1 = time.perf_counter()
            res = stylizer.stylize(rgb)
            t2 = time.perf_counter()
            out_msg = conv.rgb_to_image(res.image, msg.header)
            t3 = time.perf_counter()
            outputs[name] = res.image
            if i < 3:
                continue
            row = {"decode": (t1 - t0) * 1e3, "preprocess": res.timings["preprocess"],
                   "inference": res.timings["inference"], "postprocess": res.timings["postprocess"],
                   "encode": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
            row["node_work"] = sum(row[s] for s in NODE_WORK) + (t2 - t1) * 1e3 - res.timings["total"]
            for k, v in row.items():
                times[name][k].append(v)
        assert len(out_msg.data) == rgb.size
    diff = np.abs(outputs["before"].astype(int) - outputs["after"].astype(int))
    summary = {name: {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
                      for k, v in t.items()} for name, t in times.items()}
    return {"frames": repeats, "engines": {n: s.engine.describe() for n, s in configs.items()},
            "threads_before": threads_before or "onnxruntime default", "ms": summary,
            "last_frame_max_level_diff": int(diff.max())}


def profile_uint8_ops(card: Path, hw: tuple[int, int], runs: int = 6) -> dict:
    """Median kernel ms of the uint8 file's conversion nodes (``u8_*``, core/uint8_io.py) and of all
    nodes, from onnxruntime's profiler: what moving the conversions into the graph costs."""
    import os

    import onnxruntime as ort

    from muon_ad_ros.core.engines.onnx_engine import SessionConfig
    from muon_ad_ros.core.model_store import resolve_model

    files = resolve_model(card)
    options = SessionConfig().options()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "u8_profile")
    session = ort.InferenceSession(str(files.file_for("onnx_fp32_u8")), options, providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(0).integers(0, 256, (1, *hw, 3), dtype=np.uint8)
    style = np.eye(len(files.styles), dtype=np.float32)[:1]
    for _ in range(runs):
        session.run(None, {"image_rgb8": frame, "style_weights": style})
    path = session.end_profiling()
    per_node: dict[str, list] = {}
    for event in json.loads(Path(path).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node.setdefault(event["name"][: -len("_kernel_time")], []).append(event["dur"] / 1e3)
    os.remove(path)
    med = {k: float(np.median(v)) for k, v in per_node.items()}
    u8 = {k: v for k, v in med.items() if k.startswith("u8_")}
    return {"u8_ops_ms": sum(u8.values()), "all_nodes_ms": sum(med.values()), "u8_nodes": u8, "runs": runs}


def stages_table(res: dict) -> list[str]:
    ms = res["ms"]
    names = list(ms)
    lines = ["| stage | " + " | ".join(f"{n.replace('_', ' ')} p50 / p95 ms" for n in names) + " | "
             + " | ".join(f"{n.replace('_', ' ')} / before (p50)" for n in names[1:]) + " |",
             "|---" * (2 * len(names)) + "|"]
    for s in STAGES + ("node_work", "total"):
        cells = [f"{ms[n][s]['p50']:.2f} / {ms[n][s]['p95']:.2f}" for n in names]
        base = ms["before"][s]["p50"]
        ratios = [f"{ms[n][s]['p50'] / base:.2f}x" if base > 0 else "n/a" for n in names[1:]]
        lines.append(f"| {s.replace('_', ' ')} | " + " | ".join(cells + ratios) + " |")
    return lines


def copy_card_for_node(card: Path) -> str:
    """The model parameter the node gets (a card path, repo-relative when inside the repo)."""
    try:
        return str(card.relative_to(REPO))
    except ValueError:
        return str(card)


def cleanup(card: Path, made: bool) -> None:
    if made:
        shutil.rmtree(card.parent, ignore_errors=True)


def dds_rows(run_condition, listener, env, logs, card: Path, rounds: int, seconds: float, rate: float,
             node_args: list[str]) -> list[dict]:
    """Fresh stylize_node processes at ``rate``, float and uint8 model files alternating (ABBA...)."""
    rows = []
    for k in range(rounds):
        order = (("before", "float"), ("after", "auto")) if k % 2 == 0 else (("after", "auto"), ("before", "float"))
        for label, io in order:
            print(f"-- {label} (model_io:={io}) round {k + 1}/{rounds}: {rate:g} Hz for {seconds:g} s", flush=True)
            row = run_condition(listener, env, rate, seconds, True, logs,
                                node_args + ["-p", f"model:={card}", "-p", f"model_io:={io}"])
            diag = listener.diagnostics[-1][1] if listener.diagnostics else {}
            row.update(label=label, model_io=io, round=k,
                       startup_s=float(diag.get("startup_to_first_frame_s", "nan")))
            rows.append(row)
    return rows


ABLATION = (  # (label, extra environment of the node and the publisher)
    ("malloc tuned (default)", {}),
    ("malloc untuned", {"MALLOC_TRIM_THRESHOLD_": "131072"}),
)


def ablation_rows(run_condition, listener, env, logs, card: Path, rounds: int, seconds: float, rate: float,
                  node_args: list[str]) -> list[dict]:
    """The uint8 model file with the node's malloc tuning on and off, fresh nodes, rounds interleaved.
    'malloc untuned' sets glibc's own default trim threshold in the environment, which
    keep_frame_buffers_mapped leaves alone (the bench's subscriber stays tuned in every row)."""
    rows = []
    for k in range(rounds):
        for label, extra in ABLATION:
            print(f"-- ablation {label} round {k + 1}/{rounds}: {rate:g} Hz for {seconds:g} s", flush=True)
            row = run_condition(listener, {**env, **extra}, rate, seconds, True, logs,
                                node_args + ["-p", f"model:={card}"])
            row.update(label=label, round=k)
            rows.append(row)
    return rows


def ablation_table(rows: list[dict]) -> list[str]:
    med = lambda xs: float(np.median(xs))  # noqa: E731
    lines = ["| node | DDS in p50 / p95 ms | node work p50 / p95 ms | DDS out p50 / p95 ms | node work + transport "
             "p50 / p95 ms | beyond inference (node) + out, p95 ms | inference p50 ms | VmRSS max MB |",
             "|---|---|---|---|---|---|---|---|"]
    for label, _ in ABLATION:
        mine = [r for r in rows if r["label"] == label]
        q = lambda key, p: med([r[key][p] for r in mine])  # noqa: E731
        lines.append(f"| {label} | {q('dds_in_ms', 'p50'):.2f} / {q('dds_in_ms', 'p95'):.2f} | "
                     f"{q('node_work_ms', 'p50'):.2f} / {q('node_work_ms', 'p95'):.2f} | "
                     f"{q('dds_out_ms', 'p50'):.2f} / {q('dds_out_ms', 'p95'):.2f} | "
                     f"{q('overhead_ms', 'p50'):.2f} / **{q('overhead_ms', 'p95'):.2f}** | "
                     f"{q('overhead_two_term_ms', 'p95'):.2f} | "
                     f"{med([r['node_stages_ms']['inference']['p50'] for r in mine]):.1f} | "
                     f"{max(r['rss']['max_mb'] for r in mine):.1f} |")
    return lines


def pooled(rows: list[dict], label: str) -> dict:
    """Per-label medians over rounds of the rows' numbers (each row is its own fresh node)."""
    mine = [r for r in rows if r["label"] == label]
    med = lambda xs: float(np.median(xs))  # noqa: E731
    rss = [r["rss"] for r in mine if "rss" in r]
    return {"rows": len(mine), "engine": mine[0]["engine"],
            "node_work_p95": med([r["node_work_ms"]["p95"] for r in mine]),
            "node_work_p50": med([r["node_work_ms"]["p50"] for r in mine]),
            "transport_p95": med([r["transport_ms"]["p95"] for r in mine]),
            "overhead_p95": med([r["overhead_ms"]["p95"] for r in mine]),
            "overhead_p50": med([r["overhead_ms"]["p50"] for r in mine]),
            "inference_p50": med([r["node_stages_ms"]["inference"]["p50"] for r in mine]),
            "stages_p95": {s: med([r["node_stages_ms"][s]["p95"] for r in mine])
                           for s in ("decode", "preprocess", "postprocess", "publish")},
            "rss_last_mb": med([m["last_mb"] for m in rss]) if rss else float("nan"),
            "rss_max_mb": max(m["max_mb"] for m in rss) if rss else float("nan"),
            "startup_s": med([r["startup_s"] for r in mine]),
            "loadavg": med([r.get("loadavg_1min_end", float("nan")) for r in mine])}


COMPARE_SECTION = "## Node fast path: before / after (issue 16)"


def compare_section(res: dict) -> str:
    st, m = res["stages"], res["machine"]
    lines = [
        COMPARE_SECTION, "",
        f"Model `{res['model']}` at {res['frame']} (network {res['network']}), {m['cpu']}, {m['cores']} cores shared "
        f"with other jobs (load average {res['loadavg_start']:.1f} at the start), onnxruntime {m['onnxruntime']}, "
        f"{m['date']}. *Before*: the float model file, numpy conversions around it, onnxruntime's default "
        "session (worker threads spin between runs, memory pattern on). *After*: the uint8 model file (cast, "
        "layout, scaling and rounding in the graph, IO binding into the output array), `SessionConfig()` "
        "(threads = physical cores, no spinning, no memory pattern, no NCHWc blocked layout: ~30 MB less RSS "
        "for 3-4% more inference time, `SessionConfig.blocked_layout`). *Float file, new session*: the float path "
        "with `SessionConfig()`, to tell the session's share from the graph's. Absolute times swing 2x and more "
        "with the machine's load: read the ratios. DDS rows: transport "
        f"`{res.get('transport', 'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA')}` (what the launch files give the nodes), "
        "every node with the malloc thresholds of (3).", "",
        f"**(1) Stages in one process**, before and after interleaved frame by frame ({st['frames']} frames each; "
        "*decode* = Image -> RGB, *encode* = RGB -> Image message, *node work* = everything but inference; "
        f"last frame's largest before/after difference: {st['last_frame_max_level_diff']} level(s)):", "",
        *stages_table(st), "",
    ]
    ms = st["ms"]
    if "float_file_new_session" in ms:
        f, a = ms["float_file_new_session"], ms["after"]
        lines += [
            "Reading (1): with the same session options, the uint8 file moves the conversions out of Python: node "
            f"work p50 {f['node_work']['p50']:.1f} -> {a['node_work']['p50']:.2f} ms, while inference, which now "
            f"holds them, goes {f['inference']['p50']:.0f} -> {a['inference']['p50']:.0f} ms p50 "
            f"({a['inference']['p50'] / f['inference']['p50']:.2f}x) and the frame's total "
            f"{f['total']['p50']:.0f} -> {a['total']['p50']:.0f} ms ({a['total']['p50'] / f['total']['p50']:.2f}x): "
            "the graph's Transpose/Cast/Mul/Clip cost about what numpy's did, so the gain is the node's own "
            "work, not the frame time. Before -> float file, new session is the session options alone; in this "
            "process three sessions alternate, so *before*'s spinning workers also slow the others' runs, which "
            "a node with one session does not see: the inference ratios overstate the session's gain.", ""]
    prof = res.get("uint8_ops_profile")
    if prof:
        lines += [f"onnxruntime's profiler on the uint8 file ({prof['runs']} runs, medians): the conversion nodes "
                  f"(`u8_*`: transposes, casts, scaling, rounding, clip) take **{prof['u8_ops_ms']:.2f} ms** of "
                  f"{prof['all_nodes_ms']:.0f} ms of kernel time per frame, where numpy's conversions took "
                  f"{f['preprocess']['p50'] + f['postprocess']['p50']:.1f} ms p50 above (the issue measured 5.7 ms "
                  "on a quiet machine).", ""]
    if res.get("dds"):
        b, a = res["dds"]["before"], res["dds"]["after"]
        lines += [
            f"**(2) Over DDS**, fresh `stylize_node` processes at {res['rate']:g} Hz input, {res['seconds']:g} s each, "
            f"`model_io:=float` and `model_io:=auto` alternating over {b['rows']} rounds (medians over rounds; both "
            "with the new session options, so this isolates the model file; stage and overhead definitions as in "
            "the section above):", "",
            "| | before (float file) | after (uint8 file) | after / before |", "|---|---|---|---|",
        ]
        for key, name in (("node_work_p50", "node work p50 ms"), ("node_work_p95", "node work p95 ms"),
                          ("transport_p95", "DDS in+out p95 ms"), ("overhead_p50", "node work + transport p50 ms"),
                          ("overhead_p95", "node work + transport p95 ms"), ("inference_p50", "inference p50 ms"),
                          ("rss_last_mb", "VmRSS at the end, MB"), ("rss_max_mb", "VmRSS max, MB"),
                          ("startup_s", "process start -> first published frame, s"), ("loadavg", "load average")):
            ratio = a[key] / b[key] if b[key] else float("nan")
            lines.append(f"| {name} | {b[key]:.2f} | {a[key]:.2f} | {ratio:.2f}x |")
        for s in ("decode", "preprocess", "postprocess", "publish"):
            lines.append(f"| {s} p95 ms | {b['stages_p95'][s]:.2f} | {a['stages_p95'][s]:.2f} | "
                         f"{a['stages_p95'][s] / b['stages_p95'][s] if b['stages_p95'][s] else float('nan'):.2f}x |")
        lines += ["", "Each row (one fresh node; the machine's load moves inference 5x between rows, so read rows "
                  "of the same round side by side):", "",
                  "| round | model file | output Hz | inference p50 ms | node work p50 / p95 ms | DDS in+out p95 ms "
                  "| work + transport p95 ms | VmRSS max MB | start -> first frame s | load avg |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["dds_rows"]:
            lines.append(f"| {r['round'] + 1} | {r['model_io']} | {r['output_rate_hz']:.2f} | "
                         f"{r['node_stages_ms']['inference']['p50']:.0f} | {r['node_work_ms']['p50']:.1f} / "
                         f"{r['node_work_ms']['p95']:.1f} | {r['transport_ms']['p95']:.1f} | {r['overhead_ms']['p95']:.1f} | "
                         f"{r.get('rss', {}).get('max_mb', float('nan')):.0f} | {r['startup_s']:.1f} | "
                         f"{r.get('loadavg_1min_end', float('nan')):.1f} |")
        goal = a["overhead_p95"]
        per_row = ", ".join(f"{r['overhead_ms']['p95']:.1f}" for r in res["dds_rows"] if r["model_io"] != "float")
        lines += ["", f"Goals: node work + transport <= 5 ms p95 at {res['rate']:g} Hz: **{'met' if goal <= 5 else 'not met'}** "
                  f"({goal:.1f} ms, the median over rounds{'' if goal <= 5 else f', {goal - 5:.1f} ms over'}; "
                  f"the uint8 rows one by one: {per_row} ms); steady RSS <= 250 MB: "
                  f"**{'met' if a['rss_max_mb'] <= 250 else 'not met'}** (max {a['rss_max_mb']:.1f} MB over the uint8 rows, "
                  f"{250 - a['rss_max_mb']:+.1f} MB margin)."]
    if res.get("ablation_rows"):
        lines += [
            "", f"**(3) What carries the transport's share**: the uint8 file, fresh nodes at {res['rate']:g} Hz, "
            "with and without `core/malloc_tuning.py` (medians over rounds): glibc's mmap/trim thresholds "
            "raised so the frame-sized buffers of the DDS sample, the rclpy message and numpy are reused "
            "instead of faulted in again every frame (a page fault costs microseconds in this VM; ~225 of them "
            "per buffer). DDS in = the node's per-frame "
            "`stamp_to_receive`; DDS out = the subscriber's receive time minus the sample's source timestamp; "
            "*beyond inference (node) + out* sums two per-frame p95s instead of five (a tighter upper bound). "
            "The bench's subscriber is tuned in every row, its publisher like the node.", "",
            *ablation_table(res["ablation_rows"])]
    lines += ["", f"Reproduce: `{res['command']}` (JSON: `docs/bench/node_fast_path.json`)."]
    return "\n".join(lines) + "\n"


def main(args, bench, listener, env, logs) -> int:
    """``bench_node.py --compare``: (1) stages in process, (2) DDS rows; JSON + docs section."""
    import sys

    from common import machine, replace_section, write_json

    card, made = model_with_uint8(args.model)
    load = float(Path("/proc/loadavg").read_text().split()[0])
    res = {"command": " ".join(["python", "bench/bench_node.py"] + sys.argv[1:]), "machine": machine(),
           "frame": f"{bench.WIDTH}x{bench.HEIGHT} rgb8", "loadavg_start": load, "rate": args.rates[0],
           "seconds": args.seconds, "uint8_variant_made_by_bench": made,
           "transport": bench.transport_label(args.transport)}
    try:
        print(f"(1) stages in process, {args.compare_frames} frames each", flush=True)
        res["stages"] = stages(card, bench.load_frames(20), args.compare_frames)
        print("\n".join(stages_table(res["stages"])), flush=True)
        from muon_ad_ros.core.model_store import resolve_model
        from muon_ad_ros.core.stylizer import InputPolicy

        res["model"] = resolve_model(card).id
        net_h, net_w = InputPolicy().network_size(bench.HEIGHT, bench.WIDTH)
        res["network"] = f"{net_w}x{net_h}"
        res["uint8_ops_profile"] = profile_uint8_ops(card, (net_h, net_w))
        if args.rounds > 0:
            rows = dds_rows(bench.run_condition, listener, env, logs, card, args.rounds, args.seconds,
                            args.rates[0], args.node_args)
            res["dds_rows"] = rows
            res["dds"] = {label: pooled(rows, label) for label in ("before", "after")}
            print(json.dumps(res["dds"], indent=1), flush=True)
            res["ablation_rows"] = ablation_rows(bench.run_condition, listener, env, logs, card, args.rounds,
                                                 args.seconds, args.rates[0], args.node_args)
            print("\n".join(ablation_table(res["ablation_rows"])), flush=True)
    finally:
        cleanup(card, made)
    out = args.out or (Path(tempfile.gettempdir()) / "bench_node_fast_path.json" if args.quick
                       else REPO / "docs" / "bench" / "node_fast_path.json")
    write_json(out, res)
    if not args.no_docs:
        md = REPO / "docs" / "benchmarks.md"
        md.write_text(replace_section(md.read_text(), COMPARE_SECTION, compare_section(res)))
    print(f"wrote {out}")
    return 0
