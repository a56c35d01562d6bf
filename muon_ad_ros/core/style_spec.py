"""The one parser of style specs: what ``style`` means for the node, ``muon-ad stylize`` and eval-bag.

A style spec names a style of the model, or a mixture of styles (the networks take a weight per
style, so a mixture costs nothing extra). It is parsed into the ``[S]`` weight vector the engines
take (non-negative, summing to 1). Accepted forms:

* a style name: ``"starry_night"``;
* an index, as an int or a string of ASCII digits: ``2`` / ``"2"`` (``"²"`` is *not* an index:
  ``str.isdigit`` accepts it but ``int`` does not, so only ``0-9`` count);
* a mixture ``"name_or_index:weight,..."``: ``"starry_night:0.7,the_scream:0.3"`` or ``"0:1,2:3"``;
  weights are non-negative finite decimals, normalised to sum 1; a style may appear once;
* ``""`` or ``None``: the first style (the node's default);
* a sequence of S non-negative weights (Python API only).

Anything else raises a one-line ConfigError saying what was wrong, never another exception, so a
caller that catches ConfigError (a parameter callback, a CLI) never crashes on a style value.
A name wins over an index when a model names a style "2".
"""
from __future__ import annotations

import math
import re
from typing import Sequence, Union

import numpy as np

from muon_ad_ros.core.errors import ConfigError

StyleSpec = Union[None, int, str, Sequence[float], np.ndarray]
_INDEX = re.compile(r"[0-9]+")
_WEIGHT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_SHOWN = 60  # characters of a bad value quoted back in an error


def _show(value) -> str:
    """repr(value), cut short, so a hostile value keeps the error on one short line."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def _index_of(token: str, styles: Sequence[str]) -> int:
    """The index of one style named by name or ASCII-digit index."""
    if token in styles:
        return list(styles).index(token)
    if _INDEX.fullmatch(token):
        index = int(token)
        if index >= len(styles):
            raise ConfigError(f"style index {index} out of range 0..{len(styles) - 1}")
        return index
    raise ConfigError(f"unknown style {_show(token)}; this model has: {', '.join(styles)}")


def _weight_of(token: str, key: str) -> float:
    if not _WEIGHT.fullmatch(token):
        raise ConfigError(f"style weight of {_show(key)} must be a decimal number, got {_show(token)}")
    weight = float(token)
    if not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"style weight of {_show(key)} must be finite and >= 0, got {_show(token)}")
    return weight


def _normalised(weights: np.ndarray) -> np.ndarray:
    total = float(weights.sum())
    if not math.isfinite(total) or total <= 0:
        raise ConfigError("style weights must not all be zero")
    return (weights / total).astype(np.float32)


def _parse_mixture(text: str, styles: Sequence[str]) -> np.ndarray:
    weights = np.zeros(len(styles), dtype=np.float64)
    seen = set()
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition(":"))
        if not sep or not key:
            raise ConfigError(f"style mixture parts look like name:weight, got {_show(part.strip())}")
        index = _index_of(key, styles)
        if index in seen:
            raise ConfigError(f"style {styles[index]!r} appears twice in the mixture {_show(text)}")
        seen.add(index)
        weights[index] = _weight_of(value, key)
    return _normalised(weights)


def parse_style(spec: StyleSpec, styles: Sequence[str]) -> np.ndarray:
    """[S] float32 weights (sum 1) for ``spec`` on a model with these style names (see module doc)."""
    styles = list(styles)
    n = len(styles)
    if n == 0:
        raise ConfigError("the model lists no styles")
    weights = np.zeros(n, dtype=np.float32)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        weights[0] = 1.0
        return weights
    if isinstance(spec, bool):
        raise ConfigError(f"style must be a name, an index or a mixture, got {_show(spec)}")
    if isinstance(spec, (int, np.integer)):
        if not 0 <= spec < n:
            raise ConfigError(f"style index {int(spec)} out of range 0..{n - 1}")
        weights[int(spec)] = 1.0
        return weights
    if isinstance(spec, str):
        text = spec.strip()
        if text in styles or ":" not in text:
            weights[_index_of(text, styles)] = 1.0
            return weights
        return _parse_mixture(text, styles)
    try:
        values = np.asarray(spec, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"style must be a name, an index or a mixture, got {_show(spec)}") from None
    if values.shape != (n,) or not np.all(np.isfinite(values)) or (values < 0).any():
        raise ConfigError(f"style weights must be {n} finite non-negative numbers, got {_show(spec)}")
    return _normalised(values)


def describe_style(weights: np.ndarray, styles: Sequence[str]) -> str:
    """The canonical spec of a weight vector: the name for one style, else ``"a:0.7,b:0.3"``."""
    active = [(styles[i], float(w)) for i, w in enumerate(weights) if w > 0]
    if len(active) == 1:
        return active[0][0]
    return ",".join(f"{name}:{w:.3g}" for name, w in active)
