"""glibc malloc thresholds: keep freed multi-MB buffers in the process instead of unmapping them.

glibc serves allocations above its mmap threshold (dynamic, starting at 128 KiB) with fresh
``mmap`` pages and returns them to the kernel on ``free``; a process that receives or builds a
few MB per frame then page-faults every buffer back in, every frame (measured on the
project's 2-core machine: ~4,500 minor faults, ~7 ms CPU per 640x480 frame of all outputs; a
Python subscriber spent 10.8 ms CPU receiving a 6.1 MB cloud, 2.3 ms without the faults).
Raising the mmap threshold to its maximum and the trim threshold well above one frame's worth
keeps that memory in the heap for reuse. This is a safety net for Python processes that
receive our big messages (replay's recorder, tests, users' subscribers) and for the node; the
node's own outputs are written into reused buffers (:mod:`joint_perception.buffers`).

Two ways, same effect:

* before start-up, in the environment: ``MALLOC_MMAP_THRESHOLD_=33554432
  MALLOC_TRIM_THRESHOLD_=268435456`` (:data:`MALLOC_ENV`, :func:`malloc_environment` for child
  processes);
* at start-up from Python: :func:`keep_freed_memory` (``mallopt`` through ctypes).

:func:`release_freed_memory` (``malloc_trim``) hands the kept memory back once, e.g. after a
frame far larger than the steady ones.

Elsewhere than glibc (musl, macOS) both are no-ops. The price is a resident set that stays at
its high-water mark (a few frames' worth of buffers).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's largest default mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): 32 MiB.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Free heap top kept before trimming: 256 MiB (a 1080p frame's outputs are ~85 MB).
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
#: The environment form (read by glibc when the process starts).
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
}

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(
    mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES
) -> bool:
    """Set glibc's mmap and trim thresholds for this process (``mallopt``).

    Args:
        mmap_threshold: allocations at or above this many bytes use mmap.
        trim_threshold: free memory at the heap top above this is returned to the kernel.

    Returns:
        True when both were set; False without glibc or when glibc refused a value.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok


def release_freed_memory() -> bool:
    """Return the free memory of every malloc arena to the kernel now (glibc ``malloc_trim(0)``).

    The other side of :func:`keep_freed_memory`: after a frame much larger than the usual ones
    (a 4K frame among 640x480 ones) its buffers are freed but stay in the heap up to the trim
    threshold; whoever drops them calls this once so the resident set returns to its steady
    state. Costs a few ms; not for every frame.

    Returns:
        True when glibc released something; False without glibc or when nothing was released.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim(0) == 1


def malloc_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) with :data:`MALLOC_ENV` added where not set,
    for starting a child process that receives or publishes big messages."""
    out = dict(os.environ if env is None else env)
    for k, v in MALLOC_ENV.items():
        out.setdefault(k, v)
    return out
