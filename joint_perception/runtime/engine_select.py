"""Which engine precision to load: the node's and ``export_engine``'s ``precision`` choice.

``fp32``, ``fp16`` and ``int8`` name the engine directly. ``best`` picks, from the engines
cached for this model, TensorRT version, GPU and input shape, the **most precise** one
(fp32, then fp16, then int8) that

1. passed the accuracy gate (``accuracy_gate.passed`` in its sidecar, written by
   ``export_engine``), and
2. meets the latency target: its measured median latency (``latency.median_ms`` in the
   sidecar, also written by ``export_engine``) is at most :func:`latency_target_ms`.

When gated, timed engines exist but none meets the target, ``best`` is the fastest of them.
When none exists (nothing gated and timed yet, e.g. on first start), ``best`` is
:data:`BEST_FALLBACK` (fp16: the precision a GPU runs fastest without calibration frames, and
what the node built before ``precision`` existed); the reason says so and how to get a gated
choice (``export_engine --precision best``).

Both ``export_engine`` and the TensorRT backend call :func:`choose_precision` on the same cache
with the same keys, so they agree on the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joint_perception.metadata import ModelMetadata
from joint_perception.runtime.engine_cache import PRECISIONS, CacheEntry, EngineCache, EngineKey

#: Values of the ``precision`` parameter / ``--precision`` option.
PRECISION_CHOICES = (*PRECISIONS, "best")
#: Most precise first: the order ``best`` tries.
MOST_PRECISE_FIRST = ("fp32", "fp16", "int8")
#: ``best`` without a gated, timed engine in the cache.
BEST_FALLBACK = "fp16"
#: Network latency target (ms) of a model that does not set ``extra.latency_target_ms``: a
#: 30 Hz camera leaves 33 ms per frame, of which decoding, pre/post-processing, point cloud
#: and message building took 10 ms on a 2-core CPU (docs/performance.md); 20 ms keeps a
#: margin.
DEFAULT_LATENCY_TARGET_MS = 20.0


def latency_target_ms(metadata: ModelMetadata, override_ms: float = 0.0) -> float:
    """The network latency target in ms: ``override_ms`` when > 0, else the model's
    ``metadata.extra["latency_target_ms"]`` when it is a positive number, else
    :data:`DEFAULT_LATENCY_TARGET_MS`."""
    if override_ms and override_ms > 0:
        return float(override_ms)
    value = metadata.extra.get("latency_target_ms") if metadata.extra else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_LATENCY_TARGET_MS


def gate_record(entry: CacheEntry) -> dict[str, Any]:
    """The accuracy gate result recorded in the sidecar (``{}`` when none)."""
    gate = entry.metadata.get("accuracy_gate")
    return gate if isinstance(gate, dict) else {}


def measured_latency_ms(entry: CacheEntry) -> float | None:
    """Median latency (ms) recorded in the sidecar by ``export_engine``, or None."""
    latency = entry.metadata.get("latency")
    value = latency.get("median_ms") if isinstance(latency, dict) else None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


@dataclass(frozen=True)
class Choice:
    """Result of :func:`choose_precision`.

    Attributes:
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        reason: one line for logs and /diagnostics.
        entry: the qualifying cached engine (``best`` only), else None.
    """

    precision: str
    reason: str
    entry: CacheEntry | None = None


def _not_gated(entry: CacheEntry) -> str | None:
    """Why a cached engine is not a gated, timed candidate for ``best`` (None = it is)."""
    gate = gate_record(entry)
    if gate.get("passed") is not True:
        if not gate:
            return "accuracy gate not run"
        if "skipped" in gate:
            return f"accuracy gate skipped ({gate['skipped']})"
        return "accuracy gate failed"
    if measured_latency_ms(entry) is None:
        return "no measured latency"
    return None


def choose_precision(
    requested: str,
    cache: EngineCache,
    key_for: Callable[[str], EngineKey],
    target_ms: float,
) -> Choice:
    """Resolve ``requested`` (one of :data:`PRECISION_CHOICES`) to an engine precision.

    Args:
        requested: ``"fp32"``, ``"fp16"``, ``"int8"`` or ``"best"``.
        cache: the engine cache.
        key_for: precision -> the cache key on this machine (same model, TensorRT, GPU, shape).
        target_ms: latency target for ``best`` (see :func:`latency_target_ms`).

    Returns:
        :class:`Choice`; for ``best`` the reason lists why each more precise engine was
        passed over, e.g. ``"best: fp16 (gated, 1.84 ms <= 20 ms); fp32: 31.20 ms > 20 ms"``.

    Raises:
        ValueError: unknown ``requested`` or a non-positive ``target_ms``.
    """
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {requested!r}")
    if requested != "best":
        return Choice(requested, f"precision {requested}")
    if not target_ms > 0:
        raise ValueError(f"latency target must be > 0 ms, got {target_ms!r}")
    passed_over, too_slow = [], []
    for precision in MOST_PRECISE_FIRST:
        found = cache.lookup(key_for(precision))
        why = found.reason if found.entry is None else _not_gated(found.entry)
        if why is None:
            latency = measured_latency_ms(found.entry)
            if latency <= target_ms:
                text = f"best: {precision} (gated, {latency:.2f} ms <= {target_ms:g} ms)"
                return Choice(precision, "; ".join([text, *passed_over]), found.entry)
            too_slow.append((latency, precision, found.entry))
            why = f"{latency:.2f} ms > {target_ms:g} ms"
        passed_over.append(f"{precision}: {why}")
    if too_slow:
        latency, precision, entry = min(too_slow, key=lambda t: t[0])
        text = f"best: {precision} (gated; the fastest, none is within {target_ms:g} ms)"
        return Choice(precision, "; ".join([text, *passed_over]), entry)
    text = (
        f"best: no cached engine is gated and timed, using {BEST_FALLBACK} "
        "(export_engine --precision best --calib-bag <bag> gates and times them)"
    )
    return Choice(BEST_FALLBACK, "; ".join([text, *passed_over]))
