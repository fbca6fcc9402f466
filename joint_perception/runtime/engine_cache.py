"""TensorRT engine cache keyed as in docs/contracts.md section 4.

A serialised TensorRT engine only runs with the TensorRT version and the GPU (compute
capability) it was built for; loading any other engine fails or, worse, crashes. The cache
therefore stores each engine under a key of

    (ONNX SHA-256, TensorRT version, GPU name, compute capability, precision, input shape,
     build recipe)

as ``<dir>/<digest>.engine`` with a JSON sidecar ``<dir>/<digest>.json`` that records the key,
the engine's size and SHA-256, and extra metadata (build options, the accuracy gate result).
A lookup only returns an engine whose sidecar key equals the requested key and whose bytes
match the recorded size and hash; anything else is a miss with a logged reason
(``"no engine"``, ``"built for TensorRT 10.3 not 10.7"``, ``"SHA mismatch: corrupt"``...), and
the caller rebuilds. Writes are atomic (engine first, sidecar last), so a crash mid-store leaves
either the old entry or a miss, never a half entry that validates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joint_perception.io_utils import atomic_write_bytes, atomic_write_json, sha256_file

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: How an engine gets its precision; bumped when that changes, so older engines are rebuilt.
#: ``strongly-typed-1``: a strongly typed network parsed from the precision's own ONNX graph
#: (:mod:`joint_perception.runtime.onnx_precision`), no precision builder flags.
BUILD_RECIPE = "strongly-typed-1"
#: The recipe of sidecars written before the key had one (BuilderFlag.FP16/INT8 on an FP32 or
#: Q/DQ graph).
LEGACY_RECIPE = "weakly-typed"
DEFAULT_CACHE_DIR = Path("~/.cache/joint_perception/engines")
_SIDECAR_VERSION = 1


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on.

    Attributes:
        onnx_sha256: hex SHA-256 of the ONNX file the engine was built from.
        trt_version: ``tensorrt.__version__`` (e.g. ``"10.7.0"``).
        gpu_name: ``torch.cuda.get_device_name()`` (e.g. ``"NVIDIA Orin"``).
        compute_capability: ``"8.7"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        input_shape: (N, 3, H, W) of the network input.
        recipe: how the precision was made (:data:`BUILD_RECIPE`).
    """

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shape: tuple[int, ...]
    recipe: str = BUILD_RECIPE

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.onnx_sha256) != 64 or any(
            c not in "0123456789abcdef" for c in self.onnx_sha256
        ):
            raise ValueError(
                f"onnx_sha256 must be 64 lower-case hex digits, got {self.onnx_sha256!r}"
            )
        shape = tuple(int(d) for d in self.input_shape)
        if not shape or any(d <= 0 for d in shape):
            raise ValueError(f"input_shape must be positive ints, got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineKey:
        """Inverse of :meth:`to_dict`; a key without ``recipe`` is :data:`LEGACY_RECIPE`."""
        fields = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name != "recipe"}
        return cls(**fields, recipe=d.get("recipe", LEGACY_RECIPE))

    @property
    def digest(self) -> str:
        """Stable 24-hex-digit name: SHA-256 of the key's canonical JSON."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:24]

    @property
    def filename(self) -> str:
        """``<precision>-<H>x<W>-<digest>.engine`` (readable and unique)."""
        hw = "x".join(str(d) for d in self.input_shape[-2:])
        return f"{self.precision}-{hw}-{self.digest}.engine"

    def mismatch(self, other: EngineKey) -> str | None:
        """Why an engine built for ``other`` does not serve ``self`` (None when equal)."""
        if other == self:
            return None
        if other.onnx_sha256 != self.onnx_sha256:
            return f"built from ONNX {other.onnx_sha256[:12]} not {self.onnx_sha256[:12]}"
        if other.trt_version != self.trt_version:
            return f"built for TensorRT {other.trt_version} not {self.trt_version}"
        if (other.gpu_name, other.compute_capability) != (self.gpu_name, self.compute_capability):
            return (
                f"built for GPU {other.gpu_name} (sm {other.compute_capability}) not "
                f"{self.gpu_name} (sm {self.compute_capability})"
            )
        if other.precision != self.precision:
            return f"built for {other.precision} not {self.precision}"
        if other.recipe != self.recipe:
            return f"built {other.recipe} not {self.recipe}"
        return f"built for input {list(other.input_shape)} not {list(self.input_shape)}"


@dataclass
class CacheEntry:
    """One validated engine in the cache."""

    key: EngineKey
    engine_path: Path
    sidecar_path: Path
    size: int
    sha256: str
    metadata: dict[str, Any]

    def read_bytes(self) -> bytes:
        """The serialised engine."""
        return self.engine_path.read_bytes()


@dataclass
class Lookup:
    """Result of :meth:`EngineCache.lookup`: an entry on a hit, else the reason for the miss."""

    entry: CacheEntry | None
    reason: str

    @property
    def hit(self) -> bool:
        return self.entry is not None


class EngineCache:
    """Directory of engines + sidecars; lookup, store, validate, invalidate, list.

    Args:
        directory: cache directory (``~`` expanded; created on first store).
    """

    def __init__(self, directory: str | os.PathLike = DEFAULT_CACHE_DIR):
        self.directory = Path(directory).expanduser()

    def paths(self, key: EngineKey) -> tuple[Path, Path]:
        """(engine path, sidecar path) for ``key``."""
        engine = self.directory / key.filename
        return engine, engine.with_suffix(".json")

    def lookup(self, key: EngineKey) -> Lookup:
        """Return a valid entry for ``key`` or the reason there is none (logged at INFO).

        Besides the exact file, engines for the same ONNX model built for another
        TensorRT/GPU/precision are named in the reason, so the log says *why* it is stale.
        """
        engine, sidecar = self.paths(key)
        if not engine.exists() and not sidecar.exists():
            reason = "no engine"
            stale = [e for e in self.entries() if e.key.onnx_sha256 == key.onnx_sha256]
            if stale:
                reason += "; cached engines of this model are stale: " + "; ".join(
                    str(key.mismatch(e.key)) for e in stale
                )
            LOG.info("engine cache miss for %s: %s", key.filename, reason)
            return Lookup(None, reason)
        entry, reason = self._validate(key, engine, sidecar)
        if entry is None:
            LOG.warning("engine cache entry %s is invalid: %s", engine, reason)
        return Lookup(entry, reason)

    def _validate(self, key: EngineKey | None, engine: Path, sidecar: Path):
        if not sidecar.exists():
            return None, "sidecar missing (interrupted store?)"
        if not engine.exists():
            return None, "engine file missing"
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            stored_key = EngineKey.from_dict(meta["key"])
            size, digest = int(meta["size"]), str(meta["sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"sidecar unreadable: {exc}"
        if key is not None:
            why = key.mismatch(stored_key)
            if why is not None:
                return None, f"sidecar mismatch: {why}"
        actual = engine.stat().st_size
        if actual != size:
            return None, f"size mismatch: truncated ({actual} bytes, expected {size})"
        if sha256_file(engine) != digest:
            return None, "SHA mismatch: corrupt"
        entry = CacheEntry(stored_key, engine, sidecar, size, digest, meta.get("metadata", {}))
        return entry, "hit"

    def store(
        self, key: EngineKey, engine_bytes: bytes, metadata: dict[str, Any] | None = None
    ) -> CacheEntry:
        """Write an engine and its sidecar atomically; returns the new entry.

        Raises:
            ValueError: empty engine bytes.
        """
        if not engine_bytes:
            raise ValueError("refusing to cache an empty engine")
        engine, sidecar = self.paths(key)
        digest = hashlib.sha256(engine_bytes).hexdigest()
        # Remove the old sidecar first: between the two writes the entry is a miss, not stale.
        sidecar.unlink(missing_ok=True)
        atomic_write_bytes(engine, bytes(engine_bytes))
        side = {
            "version": _SIDECAR_VERSION,
            "key": key.to_dict(),
            "size": len(engine_bytes),
            "sha256": digest,
            "metadata": metadata or {},
        }
        atomic_write_json(sidecar, side)
        LOG.info("cached engine %s (%.1f MiB)", engine, len(engine_bytes) / 2**20)
        return CacheEntry(key, engine, sidecar, len(engine_bytes), digest, side["metadata"])

    def update_metadata(self, key: EngineKey, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into a valid entry's sidecar metadata (atomic); returns it.

        Raises:
            KeyError: no valid entry for ``key``.
        """
        found = self.lookup(key)
        if found.entry is None:
            raise KeyError(f"no valid cached engine for {key.filename}: {found.reason}")
        side = json.loads(found.entry.sidecar_path.read_text(encoding="utf-8"))
        side.setdefault("metadata", {}).update(fields)
        atomic_write_json(found.entry.sidecar_path, side)
        return side["metadata"]

    def invalidate(self, key: EngineKey, reason: str = "") -> bool:
        """Delete the entry for ``key`` (engine and sidecar); True when something was removed."""
        removed = False
        for p in self.paths(key):
            if p.exists():
                p.unlink()
                removed = True
        if removed:
            LOG.info(
                "invalidated cached engine %s%s", key.filename, f": {reason}" if reason else ""
            )
        return removed

    def entries(self) -> list[CacheEntry]:
        """Valid entries in the directory (sorted by file name); invalid ones are skipped."""
        if not self.directory.is_dir():
            return []
        out = []
        for sidecar in sorted(self.directory.glob("*.json")):
            entry, _ = self._validate(None, sidecar.with_suffix(".engine"), sidecar)
            if entry is not None:
                out.append(entry)
        return out

    def invalid_files(self) -> list[tuple[Path, str]]:
        """(path, reason) for engine files that do not validate (for ``--list`` / clean-up)."""
        if not self.directory.is_dir():
            return []
        bad = []
        for engine in sorted(self.directory.glob("*.engine")):
            entry, reason = self._validate(None, engine, engine.with_suffix(".json"))
            if entry is None:
                bad.append((engine, reason))
        return bad
