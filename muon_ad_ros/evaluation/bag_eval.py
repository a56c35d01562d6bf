"""Offline evaluation of a stylizer on a recorded bag: every frame, in bag order, once.

`evaluate_bag` reads the chosen image topics, runs each decoded frame through a `Stylizer` (the same
class the node uses), optionally writes the stylized frames to an output rosbag2 with the original
timestamps and headers, and accumulates speed, quality and stability metrics per topic.

Determinism: frames are processed one at a time in the order the bag stores them (receive time), and
nothing depends on the wall clock except the latency numbers themselves.
"""
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from muon_ad_ros.core.errors import ImageFormatError
from muon_ad_ros.evaluation import bag_io, metrics

# Stylizer stages (preprocess, inference, postprocess, temporal; stylize = their total) are what the node pays;
# decode, encode, write and metrics are the offline pipeline's own costs, reported so that a slow
# evaluation can be told apart from a slow stylizer.
STAGES = ("decode", "preprocess", "inference", "postprocess", "temporal", "stylize", "disparity", "warp", "encode",
          "write", "metrics")


@dataclass
class EvalConfig:
    topics: list                      # input image topics to evaluate
    out_path: Path = None             # output rosbag2; None = metrics only
    storage: str = None               # output storage: "mcap" | "sqlite3"; None: from the name
    overwrite: bool = False
    out_suffix: str = "/stylized"     # stylized topic = input topic + suffix
    write_compressed: bool = False    # also write <out topic>/compressed (CompressedImage)
    compressed_format: str = "jpeg"
    compressed_quality: int = 90
    copy_input: bool = False          # also copy the original topic(s) into the output bag
    metrics_max_side: int = 640       # quality / flow metrics on frames downscaled to this
    stereo: tuple = None              # (left topic, right topic): stylize pairs (evaluation/stereo_eval.py)
    stereo_mode: str = "consistent"   # consistent | independent
    slop_ns: int = 20_000_000         # stereo pairing: largest stamp difference of a pair
    max_frames: int = None            # stop each topic after this many evaluated frames
    sample_count: int = 6             # frames kept for the input/output strip
    sample_max_side: int = 256


def output_topic(topic, cfg):
    return topic.rstrip("/") + cfg.out_suffix


@dataclass
class TopicResult:
    """Everything measured on one input topic."""
    topic: str
    msgtype: str
    out_topic: str
    messages_in_bag: int
    evaluated: int = 0
    skipped: Counter = field(default_factory=Counter)     # reason -> count
    latency_ms: dict = field(default_factory=lambda: {s: [] for s in STAGES})
    timestamps: list = field(default_factory=list)        # bag time (ns) of each evaluated frame
    quality: metrics.SequenceMetrics = None
    stylizer: object = None                                # this topic's own (temporal state is per stream)
    sample_indices: set = field(default_factory=set)
    samples: list = field(default_factory=list)           # (frame index, input, output), downscaled
    sizes: Counter = field(default_factory=Counter)       # "WxH" -> count

    def summary(self, wall_s):
        """JSON-ready dict of this topic's numbers (per-frame series included, for plots)."""
        q = self.quality
        latency = {s: metrics.latency_stats(v) for s, v in self.latency_ms.items() if v}
        return {
            "topic": self.topic,
            "msgtype": self.msgtype,
            "output_topic": self.out_topic,
            "messages_in_bag": self.messages_in_bag,
            "frames_evaluated": self.evaluated,
            "frames_skipped": sum(self.skipped.values()),
            "skip_reasons": dict(self.skipped),
            "frame_sizes": dict(self.sizes),
            "latency": latency,
            # stylizer alone (what the node would sustain) vs the whole offline pipeline
            "throughput_fps": latency.get("stylize", {}).get("fps"),
            "pipeline_fps": self.evaluated / wall_s if wall_s > 0 and self.evaluated else None,
            "quality": q.summary(),
            "per_frame": {
                "timestamp_ns": list(self.timestamps),
                "stylize_ms": list(self.latency_ms["stylize"]),
                "luminance_ssim": list(q.ssim_values),
                "edge_agreement": list(q.edge_values),
                "warping_error": [_finite(x) for x in q.warp_out],
                "warping_error_input": [_finite(x) for x in q.warp_in],
                "mean_luminance": list(q.luma_out),
                "mean_luminance_input": list(q.luma_in),
            },
        }


def _finite(x):
    return float(x) if np.isfinite(x) else None


@dataclass
class EvalResult:
    input_path: Path
    bag_format: str
    bag_topics: list        # every TopicSummary of the bag
    topics: dict            # input topic -> TopicResult
    out_path: Path = None
    out_counts: dict = None  # topic -> messages written
    wall_s: float = 0.0
    stereo: dict = None      # stereo pairs: counts, consistency (evaluation/stereo_eval.py)


def evaluate_bag(input_path, stylizer, cfg, progress=None):
    """Evaluate `stylizer` on the image topics `cfg.topics` of the bag at `input_path`.

    `progress(n)` is called after each message with the number of messages handled so far.
    Raises BagError (bad bag / topic / output path) and the Stylizer's MuonAdErrors; a frame that
    cannot be decoded is counted in ``skipped`` and the run goes on.
    """
    if not cfg.topics:
        raise bag_io.BagError("no topic to evaluate")
    t_start = time.perf_counter()
    with bag_io.BagReader(input_path) as bag:
        bag.check_topics(cfg.topics)
        counts = {t.name: t for t in bag.topics()}
        results = {name: _new_result(name, counts[name], cfg) for name in cfg.topics}
        for res in results.values():  # with the temporal option each topic is its own video
            res.stylizer = stylizer.for_stream() if stylizer.temporal is not None else stylizer
        writer = bag_io.OutputBag(cfg.out_path, cfg.storage, cfg.overwrite) if cfg.out_path else None
        run, stereo = _run, None
        if cfg.stereo:
            from muon_ad_ros.evaluation.stereo_eval import StereoRun

            run = stereo = StereoRun(stylizer, cfg)
        if writer is None:
            run(bag, cfg, results, None, progress)
            out_counts = None
        else:
            with writer:
                run(bag, cfg, results, writer, progress)
            out_counts = dict(writer.counts)
        return EvalResult(Path(input_path), bag.format, bag.topics(), results,
                          Path(cfg.out_path) if cfg.out_path else None, out_counts,
                          time.perf_counter() - t_start, stereo.summary() if stereo else None)


def _new_result(name, summary, cfg):
    n = summary.count if cfg.max_frames is None else min(summary.count, cfg.max_frames)
    picks = np.linspace(0, max(n - 1, 0), num=min(cfg.sample_count, n)).round().astype(int)
    return TopicResult(name, summary.msgtype, output_topic(name, cfg), summary.count,
                       quality=metrics.SequenceMetrics(max_side=cfg.metrics_max_side),
                       sample_indices=set(picks.tolist()))


def _run(bag, cfg, results, writer, progress):
    handled = 0
    for frame in bag.frames(cfg.topics):
        handled += 1
        res = results[frame.topic]
        if cfg.max_frames is not None and res.evaluated >= cfg.max_frames:
            if all(r.evaluated >= cfg.max_frames for r in results.values()):
                break
            continue
        if frame.skip is None:
            _evaluate_frame(frame, res, res.stylizer, cfg, writer)
        if frame.skip is not None:  # the reason without its details, so that counts add up
            res.skipped[frame.skip.split(" (")[0]] += 1
        if writer is not None and cfg.copy_input:
            _copy_original(frame, bag, writer)
        if progress is not None:
            progress(handled)


def _copy_original(frame, bag, writer):
    """The input message, as it was, into the output bag (skipped frames too: it is a copy)."""
    try:
        cdr = bag.original_cdr(frame)
    except bag_io.BagError:  # a ROS 1 message too broken to re-serialize: already counted
        return
    writer.write(frame.topic, frame.msgtype, frame.timestamp, cdr)


def _evaluate_frame(frame, res, stylizer, cfg, writer):
    rgb_in = frame.rgb
    try:
        result = stylizer.stylize(rgb_in)
    except ImageFormatError as e:  # a frame the model cannot take (size, ...): skip, not fatal
        frame.skip = f"rejected by the stylizer ({e})"
        return
    stages = ("preprocess", "inference", "postprocess") + (("temporal",) if stylizer.temporal is not None else ())
    timings = {stage: result.timings[stage] for stage in stages if stage in result.timings}
    timings["stylize"] = result.timings["total"]
    record_output(frame, res, result.image, timings, cfg, writer)


def record_output(frame, res, rgb_out, timings, cfg, writer):
    """Account one stylized frame of a topic: latencies ({stage: ms}), the output bag, metrics, samples."""
    rgb_in = frame.rgb
    index = res.evaluated
    res.evaluated += 1
    res.timestamps.append(frame.timestamp)
    res.sizes[f"{rgb_in.shape[1]}x{rgb_in.shape[0]}"] += 1
    lat = res.latency_ms
    lat["decode"].append(frame.decode_ms)
    for stage, ms in timings.items():
        lat[stage].append(float(ms))

    if writer is not None:
        t0 = time.perf_counter()
        encoding = frame.encoding if frame.msgtype == bag_io.IMAGE and frame.encoding in (
            "rgb8", "bgr8") else "rgb8"
        messages = [(res.out_topic, bag_io.IMAGE,
                     bag_io.serialize_image(rgb_out, frame.stamp, frame.frame_id, encoding))]
        if cfg.write_compressed:
            messages.append((res.out_topic + "/compressed", bag_io.COMPRESSED,
                             bag_io.serialize_compressed(rgb_out, frame.stamp, frame.frame_id,
                                                         cfg.compressed_format,
                                                         cfg.compressed_quality)))
        t1 = time.perf_counter()
        for topic, msgtype, cdr in messages:
            writer.write(topic, msgtype, frame.timestamp, cdr)
        lat["encode"].append((t1 - t0) * 1e3)
        lat["write"].append((time.perf_counter() - t1) * 1e3)

    t0 = time.perf_counter()
    res.quality.add(rgb_in, rgb_out)
    lat["metrics"].append((time.perf_counter() - t0) * 1e3)
    if index in res.sample_indices:
        res.samples.append((index, metrics.limit_size(rgb_in, cfg.sample_max_side),
                            metrics.limit_size(rgb_out, cfg.sample_max_side)))
