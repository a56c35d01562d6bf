"""Which Fast DDS transport set carries 640x480 camera frames between processes at 30 Hz?

Two real processes per condition on a private ROS_DOMAIN_ID: a publisher (reliable, keep last 1,
as image_source_node / a camera driver) sends ``--frames`` 640x480 rgb8 Images at ``--rate`` after
its subscriber matched, and a subscriber (best effort, keep last 1: stylize_node's input QoS)
counts the distinct frames that arrived. Each side gets its own environment, so a condition can
model "launched node -> tool in a user's default shell" as well as "launched node -> launched node".

    .venv/bin/python bench/bench_transport.py              # ~2 min; prints a markdown table, writes docs/bench/transport.json
    .venv/bin/python bench/bench_transport.py --frames 90  # a quicker look, writes /tmp only
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, write_json  # noqa: E402
from muon_ad_ros.nodes.shutdown import shutdown  # noqa: E402

WIDTH, HEIGHT = 640, 480
TOPIC = "transport_probe"
PROFILE = REPO / "config" / "fastdds_images.xml"

# name -> environment additions (None: remove the variable)
SETUPS = {
    "default": {},
    "LARGE_DATA": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    "profile": {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)},
}
# (publisher setup, subscriber setup)
CONDITIONS = [
    ("default", "default"),
    ("LARGE_DATA", "LARGE_DATA"),
    ("LARGE_DATA", "default"),
    ("profile", "profile"),
    ("profile", "default"),
    ("default", "profile"),
]


def publisher(args) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("transport_probe_pub")
    pub = node.create_publisher(Image, TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (HEIGHT, WIDTH * 3), dtype=np.uint8).tobytes()
    period = 1.0 / args.rate
    t_next = time.monotonic()
    for i in range(args.frames):
        msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, data=pixels)
        msg.header.frame_id = str(i)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    time.sleep(1.0)  # let the last frames leave before the participant goes
    print(json.dumps({"sent": args.frames}), flush=True)
    shutdown(node)  # destroys the participant: its shared-memory segment is removed, not leaked


def subscriber(args) -> None:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("transport_probe_sub")
    seen, latencies = set(), []

    def on_image(msg):
        now = node.get_clock().now().nanoseconds
        seen.add(int(msg.header.frame_id))
        latencies.append((now - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6)

    node.create_subscription(Image, TOPIC, on_image, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    end = time.monotonic() + args.frames / args.rate + 25
    last = None
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if seen and last is None:
            last = time.monotonic()
        if latencies and len(seen) == args.frames:
            break
        if last is not None and seen and time.monotonic() - last > args.frames / args.rate + 3:
            break
    latencies.sort()
    median = latencies[len(latencies) // 2] if latencies else None
    print(json.dumps({"received": len(seen), "median_ms": median}), flush=True)
    shutdown(node)


def run_condition(pub_setup: str, sub_setup: str, args) -> dict:
    domain = str(random.SystemRandom().randint(120, 199))

    def env_of(setup):
        env = dict(os.environ, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED="1")
        for key in ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
            env.pop(key, None)
        env.update(SETUPS[setup])
        return env

    common = [sys.executable, __file__, "--frames", str(args.frames), "--rate", str(args.rate)]
    sub = subprocess.Popen(common + ["--role", "sub"], env=env_of(sub_setup), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pub = subprocess.Popen(common + ["--role", "pub"], env=env_of(pub_setup), stdout=subprocess.PIPE, text=True)
    try:
        pub_out, _ = pub.communicate(timeout=args.frames / args.rate + 40)
        sub_out, _ = sub.communicate(timeout=40)
    finally:
        for p in (pub, sub):
            if p.poll() is None:
                p.kill()
                p.wait()
    sent = json.loads(pub_out.strip().splitlines()[-1])["sent"] if pub_out.strip() else 0
    got = json.loads(sub_out.strip().splitlines()[-1])
    return {"publisher": pub_setup, "subscriber": sub_setup, "sent": sent, **got}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("pub", "sub"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", help="run only conditions 'pub:sub' (comma separated)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.role == "pub":
        return publisher(args)
    if args.role == "sub":
        return subscriber(args)
    conditions = CONDITIONS
    if args.only:
        conditions = [tuple(c.split(":")) for c in args.only.split(",")]
    rows = []
    for _ in range(args.repeats):
        for pub_setup, sub_setup in conditions:
            row = run_condition(pub_setup, sub_setup, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\n| publisher | subscriber | received / sent ({args.rate:g} Hz, {WIDTH}x{HEIGHT} rgb8) | median stamp -> receive |")
    print("|---|---|---|---|")
    for r in rows:
        med = f"{r['median_ms']:.1f} ms" if r["median_ms"] is not None else "-"
        print(f"| {r['publisher']} | {r['subscriber']} | {r['received']} / {r['sent']} | {med} |")
    out = args.out or (REPO / "docs" / "bench" / "transport.json" if args.frames >= 300 else Path(tempfile.gettempdir()) / "transport.json")
    write_json(out, {"machine": machine(), "frames": args.frames, "rate_hz": args.rate,
                     "size": [WIDTH, HEIGHT], "profile": PROFILE.relative_to(REPO).as_posix(), "rows": rows})


if __name__ == "__main__":
    main()
