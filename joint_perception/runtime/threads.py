"""CPU threading of the inference backends and of OpenCV: the machine-dependent defaults.

Measured on the project's 2-core machine (docs/performance.md "Threads"): ONNX Runtime's default
session (one intra-op thread per core, spin-waiting after every operator) burns a whole core
spinning between frames and gives no speed-up on the small default network; one thread without
spinning does the same work for a fraction of the CPU. So:

* ``intra_op_threads``: 0 (or None) = :func:`default_intra_op_threads`: 1 on a machine with at
  most 2 usable cores, else the backend's own default (not measured on 4+ cores yet);
* spinning: off unless asked for (``intra_op_spinning=True`` trades CPU for lower latency on a
  machine with cores to spare);
* OpenCV's worker pool: :func:`limit_opencv_threads` (1 thread), called by whoever owns the
  process (the node, the tools); the per-frame resizes are too small to gain from it.

No ROS and no backend imports here; the backends apply the values.
"""

from __future__ import annotations

import os

#: Machines with at most this many usable cores get one intra-op thread by default.
SMALL_MACHINE_CORES = 2


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_intra_op_threads(cores: int | None = None) -> int | None:
    """The intra-op thread count for ``cores`` usable cores (default: :func:`usable_cores`).

    Returns:
        1 when ``cores <= SMALL_MACHINE_CORES``, else None (= the backend's own default).
    """
    cores = usable_cores() if cores is None else int(cores)
    return 1 if cores <= SMALL_MACHINE_CORES else None


def resolve_intra_op_threads(requested: int | None, cores: int | None = None) -> int | None:
    """``requested`` when positive, else :func:`default_intra_op_threads`.

    Raises:
        ValueError: negative ``requested``.
    """
    if requested is not None and int(requested) < 0:
        raise ValueError(f"intra_op_threads must be >= 0 (0 = machine default), got {requested}")
    if requested:
        return int(requested)
    return default_intra_op_threads(cores)


def limit_opencv_threads(threads: int = 1) -> int:
    """Set OpenCV's worker-thread count (``cv2.setNumThreads``); returns the previous count.

    Process-wide: call once at start-up (the node's ``main``, the tools).
    """
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(int(threads))
    return before


def add_thread_arguments(parser) -> None:
    """Add ``--intra-op-threads N`` and ``--intra-op-spinning`` to an ``argparse`` parser
    (the tools' spelling of the node parameters of the same names)."""
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="CPU threads per network operator; 0 = machine default (1 on <= 2 cores)",
    )
    parser.add_argument(
        "--intra-op-spinning",
        action="store_true",
        help="let ONNX Runtime's idle threads spin-wait (more CPU, a little less latency)",
    )


def thread_options(args) -> dict:
    """``{"intra_op_threads", "intra_op_spinning"}`` from :func:`add_thread_arguments`' args,
    ready for :func:`joint_perception.runtime.factory.create_backend`.

    Raises:
        ValueError: negative thread count.
    """
    threads = int(args.intra_op_threads)
    if threads < 0:
        raise ValueError(f"--intra-op-threads must be >= 0, got {threads}")
    return {"intra_op_threads": threads, "intra_op_spinning": bool(args.intra_op_spinning)}
