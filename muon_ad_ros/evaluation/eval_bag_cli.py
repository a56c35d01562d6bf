"""``muon-ad eval-bag``: evaluate the stylizer on a recorded bag, write a stylized bag and a report.

    muon-ad eval-bag run.mcap                                # list the image topics
    muon-ad eval-bag run.mcap --topic /camera/image_raw --out stylized.mcap --report report/

Exit codes: 0 done, 2 user error (one line on stderr, no traceback), 130 interrupted (no output bag
or report that looks complete is left behind).
"""
import argparse
import sys

from muon_ad_ros.core.errors import MuonAdError
from muon_ad_ros.core.image_codec import DEFAULT_MAX_SIDE
from muon_ad_ros.evaluation import bag_io
from muon_ad_ros.evaluation.bag_eval import EvalConfig, evaluate_bag

USER_ERROR = 2
INTERRUPTED = 130


def register(subparsers):
    """Add the ``eval-bag`` sub-command to an argparse sub-parsers object."""
    p = subparsers.add_parser("eval-bag", help="evaluate the stylizer on a rosbag (speed, quality, "
                              "stability) and write a stylized bag", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p):
    p.add_argument("input", help="ROS 1 .bag, rosbag2 directory, or .mcap / .db3 file")
    p.add_argument("--topic", action="append", default=[],
                   help="image topic to evaluate (Image or CompressedImage); repeat for several")
    p.add_argument("--all-topics", action="store_true", help="evaluate every image topic")
    p.add_argument("--stereo", nargs=2, metavar=("LEFT", "RIGHT"), default=None,
                   help="a rectified stereo pair of image topics: frames paired by stamp and stylized as pairs")
    p.add_argument("--stereo-mode", default="consistent", choices=["consistent", "independent"],
                   help="consistent: right view from the stylized left one via disparity (default)")
    p.add_argument("--slop", type=float, default=0.02, help="--stereo: largest stamp difference (s) of a pair")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="default", help="model id, card, .onnx or .safetensors")
    m.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch", "tensorrt"])
    m.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    m.add_argument("--style", default="0", help="style name, index or mixture such as 'a:0.7,b:0.3'")
    m.add_argument("--strength", type=float, default=1.0, help="blend with the input, 0..1")
    m.add_argument("--resolution", default=None, metavar="WxH", help="fixed network resolution")
    m.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"cap the network's longer side (default {DEFAULT_MAX_SIDE}; 0: full size)")
    m.add_argument("--threads", type=int, default=None, help="CPU threads of the engine")
    m.add_argument("--temporal", action="store_true",
                   help="steady video: blend each output with the previous one along the input's flow "
                        "(per topic; as stylize_node's temporal parameter)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, metavar="OUTPUT_BAG",
                   help="output rosbag2: a directory, or a single file if named *.mcap / *.db3")
    o.add_argument("--storage", default=None, choices=sorted(bag_io.STORAGE),
                   help="output storage (default: sqlite3 for *.db3, else mcap)")
    o.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT_BAG if it is a bag this tool wrote or a single .mcap/.db3 file "
                        "(never any other directory)")
    o.add_argument("--out-suffix", default="/stylized", help="stylized topic = input topic + this")
    o.add_argument("--compressed", action="store_true",
                   help="also write <stylized topic>/compressed (CompressedImage)")
    o.add_argument("--compressed-format", default="jpeg", choices=["jpeg", "png"])
    o.add_argument("--quality", type=int, default=90, help="JPEG quality of --compressed")
    o.add_argument("--copy-input", action="store_true", help="copy the input topic(s) to the output")
    o.add_argument("--report", default=None, metavar="REPORT_DIR",
                   help="write report.json, report.md and plots here")
    e = p.add_argument_group("evaluation")
    e.add_argument("--max-frames", type=int, default=None, help="evaluate at most N frames per topic")
    e.add_argument("--metrics-max-side", type=int, default=640,
                   help="compute quality/flow metrics on frames downscaled to this longer side")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_resolution(text):
    from muon_ad_ros.core.stylizer import parse_wxh

    return None if text is None else parse_wxh(text, "--resolution")


def _list_topics(bag, stream):
    topics = bag.image_topics()
    print(f"image topics in {bag.path}:", file=stream)
    for t in topics:
        print(f"  {t.name}  {t.msgtype}  {t.count} msgs", file=stream)
    return topics


def _check_args(args):
    if args.quality < 1 or args.quality > 100:
        raise bag_io.BagError(f"--quality must be within 1..100, got {args.quality}")
    if args.max_frames is not None and args.max_frames < 1:
        raise bag_io.BagError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.metrics_max_side < 16:
        raise bag_io.BagError(f"--metrics-max-side must be at least 16, got {args.metrics_max_side}")
    if not 0 <= args.slop <= 10:
        raise bag_io.BagError(f"--slop must be within 0..10 s, got {args.slop}")


def _choose_topics(args):
    """The topics to evaluate, or None when the user only asked for the listing."""
    with bag_io.BagReader(args.input) as bag:
        images = bag.image_topics()
        if not images:
            raise bag_io.BagError(f"{args.input} has no sensor_msgs Image or CompressedImage topic; "
                                  f"its topics: {', '.join(t.name for t in bag.topics()) or 'none'}")
        if args.stereo:
            if args.stereo[0] == args.stereo[1]:
                raise bag_io.BagError("--stereo needs two different topics")
            bag.check_topics(args.stereo)
            return list(args.stereo)
        if args.all_topics:
            return [t.name for t in images]
        if not args.topic:
            _list_topics(bag, sys.stdout)
            if args.out or args.report:
                raise bag_io.BagError("choose the topic(s) to evaluate with --topic (or --all-topics)")
            return None
        bag.check_topics(args.topic)  # absent / not an image: BagError listing the image topics
        return list(dict.fromkeys(args.topic))


def _progress_bar(total, disable):
    from tqdm import tqdm
    bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=disable or None,
               dynamic_ncols=True, smoothing=0.1)
    return bar


def run(args):
    """Run ``eval-bag``; returns the exit code."""
    from muon_ad_ros.core.stylizer import Stylizer  # heavy (engines): only when evaluating
    from muon_ad_ros.evaluation import report as report_mod

    bar = None
    try:
        _check_args(args)
        topics = _choose_topics(args)
        if topics is None:
            return 0
        if args.out:  # fail on the output paths before loading the model and evaluating
            bag_io.OutputBag(args.out, args.storage, args.overwrite)
        if args.report:
            report_mod.check_report_dir(args.report)
        stylizer = Stylizer.from_model(args.model, backend=args.backend, precision=args.precision,
                                       style=args.style, strength=args.strength,
                                       resolution=_parse_resolution(args.resolution),
                                       max_side=args.max_side, threads=args.threads,
                                       temporal=args.temporal)
        cfg = EvalConfig(topics=topics, out_path=args.out, storage=args.storage,
                         overwrite=args.overwrite, out_suffix=args.out_suffix,
                         write_compressed=args.compressed, compressed_format=args.compressed_format,
                         compressed_quality=args.quality, copy_input=args.copy_input,
                         metrics_max_side=args.metrics_max_side, max_frames=args.max_frames,
                         stereo=tuple(args.stereo) if args.stereo else None, stereo_mode=args.stereo_mode,
                         slop_ns=int(args.slop * 1e9))
        with bag_io.BagReader(args.input) as bag:
            total = sum(t.count for t in bag.topics() if t.name in topics)
        bar = _progress_bar(total, args.no_progress)
        result = evaluate_bag(args.input, stylizer, cfg, progress=lambda n: bar.update(n - bar.n))
        bar.close()
        bar = None
        model_info = {"id": stylizer.card.get("id"), "model": str(args.model),
                      "backend": args.backend, "precision": args.precision,
                      "style": args.style, "styles": list(stylizer.styles),
                      "strength": args.strength, "resolution": args.resolution,
                      "max_side": args.max_side, "temporal": args.temporal, "card": stylizer.card}
        report = report_mod.build_report(result, model_info)
        if args.report:
            report_mod.write_report(args.report, report, result)
        _print_summary(report, args)
        return 0
    except MuonAdError as e:
        _close(bar)
        print(f"muon-ad eval-bag: error: {e}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        _close(bar)
        print("muon-ad eval-bag: interrupted; no output bag or report was written", file=sys.stderr)
        return INTERRUPTED


def _close(bar):
    if bar is not None:
        bar.close()


def _print_summary(report, args):
    for name, s in report["topics"].items():
        q, lat = s["quality"], s["latency"].get("stylize", {})
        fmt = lambda v, spec=".4f": "n/a" if v is None else format(v, spec)  # noqa: E731
        print(f"{name}: {s['frames_evaluated']}/{s['messages_in_bag']} frames "
              f"({s['frames_skipped']} skipped), stylize p50 {fmt(lat.get('p50_ms'), '.1f')} ms "
              f"p95 {fmt(lat.get('p95_ms'), '.1f')} ms p99 {fmt(lat.get('p99_ms'), '.1f')} ms, "
              f"SSIM {fmt(q['luminance_ssim'])}, edges {fmt(q['edge_agreement'])}, "
              f"warping {fmt(q['warping_error'], '.5f')} "
              f"(input {fmt(q['warping_error_input_floor'], '.5f')}), "
              f"flicker {fmt(q['flicker'], '.5f')} (input {fmt(q['flicker_input'], '.5f')})")
    st = report.get("stereo")
    if st:
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"stereo ({st['mode']}): {st['pairs']} pairs, {st['unmatched']} unmatched frames, "
              f"difference {fmt(st['difference'])} (input {fmt(st['difference_input'])}; 0-255, "
              f"{st['difference_disparity']} disparity)")
    if args.out:
        print(f"output bag: {args.out}")
    if args.report:
        print(f"report: {args.report}/report.md")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="muon-ad eval-bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
