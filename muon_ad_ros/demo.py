"""``muon-ad demo``: camera-free end-to-end run of the ROS 2 pipeline, three real processes over DDS.

    image_source_node  --image_raw-->  stylize_node  --image_stylized-->  recorder_node
    (built-in sample or --input)        (default model)                    (video + contact sheet)

The demo process starts the three nodes, waits until stylized frames flow, then switches the
stylizer through every style of the model by parameter updates (as ``ros2 param set`` would), so
the contact sheet shows each style. It prints the frame rate and latency percentiles and writes
everything to the output folder (default out/demo). Exit status: 0 when frames came through, 1 when
none did, 2 on a usage error.

Its own ROS node lives in the node layer (``nodes/demo_monitor.py``) and is imported only when
the demo runs, so ``muon-ad`` works without ROS installed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from muon_ad_ros.core.errors import ConfigError, MuonAdError
from muon_ad_ros.core.model_store import resolve_model
from muon_ad_ros.core.stylizer import parse_wxh

PACKAGE = "muon_ad_ros"
NODES = ("recorder_node", "stylize_node", "image_source_node")  # start order: the recorder listens first


def config_dir() -> Path:
    """The package's config folder: the source tree, else the installed share/muon_ad_ros/config."""
    source_tree = Path(__file__).resolve().parents[1] / "config"
    if source_tree.is_dir():
        return source_tree
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except Exception:  # ament_index absent or the package not indexed
        return Path(sys.prefix) / "share" / PACKAGE / "config"


TRANSPORT_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def dds_environment(domain_id: int | None) -> dict:
    """The environment for every demo process (and this one); stylize.launch.py does the same.

    FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_images.xml: with Fast DDS's default transports
    most 640x480 frames are lost between processes (24 of 300 arrived at 30 Hz); the profile keeps
    the default kinds (shared memory + UDP) with a shared-memory segment that holds images, so all
    arrive and a ROS tool in a default shell still reaches the nodes (docs/ros.md). A profile or
    FASTDDS_BUILTIN_TRANSPORTS the user set is kept. ROS_AUTOMATIC_DISCOVERY_RANGE is left alone.
    """
    env = dict(os.environ)
    if not any(env.get(k) for k in TRANSPORT_VARIABLES):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(config_dir() / "fastdds_images.xml")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    elif "ROS_DOMAIN_ID" not in env:
        env["ROS_DOMAIN_ID"] = str(random.randint(100, 199))  # keep clear of other ROS systems
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parse_size(text: str) -> tuple[int, int]:
    return parse_wxh(text, "--size")


def node_commands(args, params_file: Path, out_dir: Path, untrained: bool) -> dict[str, list[str]]:
    """The command line of each node: the params file, then the demo's own choices on top."""
    width, height = parse_size(args.size)
    source_spec = str(Path(args.input).expanduser().resolve()) if args.input != "sample" else "sample"
    source = [f"source:={source_spec}", f"rate:={float(args.rate)}", f"width:={width}", f"height:={height}"]
    if args.bag_topic:
        source.append(f"bag_topic:={args.bag_topic}")
    stylize = [f"model:={args.model}", f"backend:={args.backend}", f"precision:={args.precision}"]
    if args.max_side is not None:
        stylize.append(f"max_side:={args.max_side}")
    if args.threads is not None:
        stylize.append(f"threads:={args.threads}")
    title = f"muon-ad demo - model {args.model}" + (" - UNTRAINED" if untrained else "")
    recorder = [f"output_dir:={out_dir}", f"video_fps:={float(args.rate)}", f"sheet_title:={title}"]
    commands = {}
    for node, overrides in (("image_source_node", source), ("stylize_node", stylize),
                            ("recorder_node", recorder)):
        cmd = [sys.executable, "-m", f"{PACKAGE}.nodes.{node}", "--ros-args",
               "--params-file", str(params_file)]
        for item in overrides:
            cmd += ["-p", item]
        commands[node] = cmd
    return commands


class Children:
    """The node processes, each in its own session (a Ctrl-C reaches the demo only, which then
    stops them in order so the recorder can finish its files)."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir, self.env = log_dir, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            proc.send_signal(sig)
            try:
                return proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return proc.poll()

    def stop_all(self) -> None:
        for name in ("image_source_node", "stylize_node", "recorder_node"):
            self.stop(name)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])


def _ms(diag: dict, key: str) -> str:
    try:
        value = float(diag.get(key, "nan"))
    except ValueError:
        value = math.nan
    return "n/a" if math.isnan(value) else f"{value:.1f} ms"


def run(args) -> int:
    model = resolve_model(args.model)
    styles = model.styles
    untrained = bool(model.card.get("untrained"))
    if not styles:
        raise ConfigError(f"model {model.id} lists no styles")
    if args.seconds_per_style <= 0:
        raise ConfigError("--seconds-per-style must be positive")
    if args.input != "sample" and not Path(args.input).expanduser().exists():
        raise ConfigError(f"--input not found: {args.input}")
    params_file = Path(args.params_file) if args.params_file else config_dir() / "demo.yaml"
    if not params_file.is_file():
        raise ConfigError(f"parameter file not found: {params_file}")
    out_dir = Path(args.output_dir).expanduser().resolve()
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "demo.json", "contact_sheet.png", "stylized.mp4"):
        (out_dir / stale).unlink(missing_ok=True)

    env = dds_environment(args.domain_id)
    transport = {k: env[k] for k in TRANSPORT_VARIABLES if env.get(k)}
    os.environ.update(transport, ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"])
    print(f"muon-ad demo: {args.input} -> stylize_node ({model.id}, {args.backend}) -> recorder -> {out_dir}")
    print(f"  ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}  " + "  ".join(f"{k}={v}" for k, v in transport.items()))
    if untrained:
        print(f"  NOTE: model {model.id} is UNTRAINED (seeded random weights): its {len(styles)} 'styles' "
              "are not real styles and the output looks like noise. Train or install a trained model.")

    children = Children(log_dir, env)
    monitor = None
    t_start = time.monotonic()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops the nodes cleanly, as Ctrl-C does
    try:
        for name, cmd in node_commands(args, params_file, out_dir, untrained).items():
            children.start(name, cmd)
        from muon_ad_ros.nodes.demo_monitor import Monitor  # rclpy only when the demo runs

        monitor = Monitor()
        deadline = time.monotonic() + args.startup_timeout
        while not monitor.flowing():
            if children.dead() or time.monotonic() > deadline:
                return _fail(children, "no stylized frame came through"
                             + (f" ({', '.join(children.dead())} exited)" if children.dead() else
                                f" within {args.startup_timeout:g} s"))
            monitor.spin_for(0.2)
        print(f"  frames flowing after {time.monotonic() - t_start:.1f} s; cycling {len(styles)} styles, "
              f"{args.seconds_per_style:g} s each")
        for style in styles:
            reason = monitor.set_style(style)
            if reason:
                print(f"  style {style}: not set ({reason})")
                continue
            monitor.spin_for(args.seconds_per_style)
            d = monitor.diagnostics
            print(f"  style {style:<16} out {float(d.get('output_rate_hz', 0)):5.1f} Hz  "
                  f"inference p50 {_ms(d, 'inference_p50_ms')}  "
                  f"stamp->publish p50 {_ms(d, 'stamp_to_publish_p50_ms')}")
        children.stop("image_source_node")
        monitor.spin_for(1.0)   # the last frames drain; one more diagnostics message
        diagnostics = dict(monitor.diagnostics)
    except KeyboardInterrupt:
        print("  interrupted: stopping the nodes and writing what was recorded")
        diagnostics = dict(monitor.diagnostics) if monitor else {}
    finally:
        if monitor is not None:
            monitor.close()
        children.stop_all()

    return _report(out_dir, children, diagnostics, time.monotonic() - t_start)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _fail(children: Children, why: str) -> int:
    print(f"muon-ad demo: FAILED: {why}", file=sys.stderr)
    for name in NODES:
        print(f"  --- {name} log (last lines) ---\n{children.log_tail(name)}", file=sys.stderr)
    return 1


def _report(out_dir: Path, children: Children, diagnostics: dict, wall_s: float) -> int:
    summary_path = out_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError):
        return _fail(children, f"the recorder wrote no summary ({summary_path})")
    (out_dir / "demo.json").write_text(json.dumps({"recorder": summary, "stylize_node": diagnostics,
                                                   "wall_seconds": round(wall_s, 1)}, indent=2) + "\n")
    if not summary.get("frames"):
        return _fail(children, "the recorder received no frame")
    lat = summary["latency_stamp_to_receive_ms"]
    d = diagnostics
    print(f"\nmuon-ad demo: {summary['frames']} stylized frames recorded in {summary['seconds']:.1f} s "
          f"(wall time {wall_s:.0f} s)")
    print(f"  FPS              {summary['fps'] or 0:.1f} recorded, stylize_node in "
          f"{float(d.get('input_rate_hz', 'nan')):.1f} Hz / out "
          f"{float(d.get('output_rate_hz', 'nan')):.1f} Hz, "
          f"dropped {d.get('dropped', '?')} of {d.get('frames_in', '?')}")
    print(f"  latency          camera stamp -> recorder: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    print(f"  stylize_node     stamp -> publish p50 {_ms(d, 'stamp_to_publish_p50_ms')}, p95 "
          f"{_ms(d, 'stamp_to_publish_p95_ms')}; inference p50 {_ms(d, 'inference_p50_ms')}, "
          f"p95 {_ms(d, 'inference_p95_ms')}")
    print(f"  styles shown     {', '.join(summary.get('labels', [])) or 'none'}")
    print(f"  video            {summary.get('video')}")
    print(f"  contact sheet    {summary.get('contact_sheet')}")
    print(f"  logs             {out_dir / 'logs'}")
    if d.get("untrained") == "true":
        print("  NOTE: the model is UNTRAINED; the images show what the pipeline does, not a style.")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", default="sample",
                   help="'sample' (built-in photos, default), a video file, an image folder or a rosbag")
    p.add_argument("--bag-topic", default="", help="image topic of a rosbag --input (default: its first)")
    p.add_argument("--output-dir", default="out/demo", help="where the video, contact sheet and logs go")
    p.add_argument("--seconds-per-style", type=float, default=4.0, help="how long each style runs")
    p.add_argument("--rate", type=float, default=15.0, help="source frame rate (Hz)")
    p.add_argument("--size", default="640x480", help="source frame size WxH")
    p.add_argument("--model", default="default", help="model id, card, .onnx or .safetensors")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch", "tensorrt"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--max-side", type=int, default=None, help="cap the network input's longer side "
                   "(default: demo.yaml's, 320)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the engine")
    p.add_argument("--params-file", default=None, help="node parameters (default: config/demo.yaml)")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID, else a random one in 100..199)")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the first frame")


def register(subparsers):
    """Add the ``demo`` sub-command to the ``muon-ad`` parser."""
    p = subparsers.add_parser("demo",
                              help="run source -> stylize_node -> recorder over ROS 2 on a bundled sample",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="muon-ad demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MuonAdError as exc:
        print(f"muon-ad demo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
