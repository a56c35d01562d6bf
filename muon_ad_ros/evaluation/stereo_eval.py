"""eval-bag on a stereo bag: the left and right image topics paired by stamp and stylized as pairs.

Pairing is the stereo node's (core/approx_sync.py, ``slop``); each pair goes through the same
StereoStylizer (``consistent`` or ``independent``). Each eye's topic gets the usual per-topic
numbers (bag_eval.record_output); the pair adds:

* ``difference``: mean absolute difference (0-255) between the left output and the right output
  warped onto the left view, on pixels both cameras see, as metrics.stereo_difference - with the
  disparity *estimated* from the input pair (StereoSGBM at full resolution: a bag has no ground
  truth; the same kind of estimate drives the consistent mode, so it flatters that mode somewhat:
  benchmarks use ground truth, docs/consistency.md);
* ``difference_input``: the same on the input pair (the floor: exposure, specular light, errors
  of the estimate);
* ``unmatched``: frames without a partner within slop.
"""
from __future__ import annotations

import numpy as np

from muon_ad_ros.core.approx_sync import ApproximatePairer
from muon_ad_ros.core.errors import ImageFormatError
from muon_ad_ros.core.stereo import StereoConfig, StereoStylizer, scale_disparity, sgbm_disparity
from muon_ad_ros.evaluation import metrics
from muon_ad_ros.evaluation.bag_eval import record_output


def stamp_ns(frame) -> int:
    sec, nsec = frame.stamp
    return int(sec) * 1_000_000_000 + int(nsec)


class StereoRun:
    """Called like bag_eval._run; ``summary()`` afterwards."""

    def __init__(self, stylizer, cfg):
        self.stereo = StereoStylizer(stylizer, cfg.stereo_mode)
        self.measure_cfg = StereoConfig(max_side=max(32, cfg.metrics_max_side))
        self.pairer = ApproximatePairer(2, queue_size=10, slop_ns=cfg.slop_ns)
        self.differences, self.differences_input, self.rejected = [], [], 0

    def __call__(self, bag, cfg, results, writer, progress):
        eye_of = {topic: i for i, topic in enumerate(cfg.stereo)}
        handled = 0
        for frame in bag.frames(list(cfg.stereo)):
            handled += 1
            if frame.skip is None:
                pair = self.pairer.add(eye_of[frame.topic], stamp_ns(frame), frame)
                if pair is not None and (cfg.max_frames is None or self.pairer.matched <= cfg.max_frames):
                    self._evaluate_pair(pair, [results[t] for t in cfg.stereo], cfg, writer)
            if frame.skip is not None:
                results[frame.topic].skipped[frame.skip.split(" (")[0]] += 1
            if progress is not None:
                progress(handled)

    def _evaluate_pair(self, pair, res, cfg, writer):
        left, right = pair
        try:
            result = self.stereo.stylize_pair(left.rgb, right.rgb)
        except ImageFormatError:  # the eyes differ in size: the pair is skipped, counted
            self.rejected += 1
            for r in res:
                r.skipped["pair rejected by the stylizer"] += 1
            return
        t = result.timings
        record_output(left, res[0], result.left, {"stylize": t["left"]}, cfg, writer)
        record_output(right, res[1], result.right, {"stylize": t["right"], "disparity": t["disparity"],
                                                    "warp": t["warp"]}, cfg, writer)
        l_in, r_in = (metrics.limit_size(x, cfg.metrics_max_side) for x in (left.rgb, right.rgb))
        l_out, r_out = (metrics.limit_size(x, cfg.metrics_max_side) for x in (result.left, result.right))
        h, w = l_in.shape[:2]
        disp = scale_disparity(sgbm_disparity(l_in, r_in, self.measure_cfg), h, w)
        self.differences.append(metrics.stereo_difference(l_out, r_out, disp)[0])
        self.differences_input.append(metrics.stereo_difference(l_in, r_in, disp)[0])

    def summary(self) -> dict:
        def mean(values):
            v = [x for x in values if np.isfinite(x)]
            return float(np.mean(v)) if v else None

        pending = sum(len(q) for q in self.pairer.queues)
        return {"mode": self.stereo.mode, "pairs": self.pairer.matched - self.rejected, "rejected": self.rejected,
                "unmatched": self.pairer.unmatched_total + pending,
                "difference": mean(self.differences), "difference_input": mean(self.differences_input),
                "difference_disparity": "estimated (StereoSGBM on the inputs)"}
