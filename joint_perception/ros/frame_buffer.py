"""Newest-frame-only hand-over between the ROS callbacks and the inference worker.

docs/contracts.md section 3: inference always works on the newest frame; stale frames are dropped and
counted, never queued. :class:`LatestSlot` is a one-element mailbox: the subscription callback
``put`` s a frame (never blocks), the worker ``take`` s it (blocks with a timeout). A frame that
is overwritten before the worker took it counts as *dropped*.

:class:`CameraInfoMatcher` pairs images with CameraInfo by header stamp — cached latest,
exact stamp, or nearest stamp within a slop — without message_filters.

Both are ROS-free (they store opaque objects and integer nanosecond stamps) and thread-safe
where they need to be.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any


@dataclass
class SlotCounters:
    """Counts since start: frames put, taken by the worker, and overwritten unprocessed."""

    received: int = 0
    taken: int = 0
    dropped: int = 0


class _BoundedSlot:
    """Thread-safe bounded FIFO hand-over shared by :class:`LatestSlot` and :class:`FifoSlot`.

    ``put`` never blocks: into a full slot it drops the *oldest* item (counted in
    ``counters.dropped``) and wakes the consumer; ``take`` waits for an item. After
    :meth:`close`, ``take`` returns None immediately and ``put`` is ignored.

    Args:
        capacity: items held at most (>= 1).
    """

    def __init__(self, capacity: int) -> None:
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._capacity = int(capacity)
        self._closed = False
        self.counters = SlotCounters()

    def put(self, item: Any) -> bool:
        """Store ``item``; returns True when an unprocessed item was dropped for it."""
        with self._cond:
            if self._closed:
                return False
            dropped = len(self._queue) >= self._capacity
            if dropped:
                self._queue.popleft()
            self._queue.append(item)
            self.counters.received += 1
            self.counters.dropped += int(dropped)
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Any:
        """Remove and return the oldest held item; None after ``timeout`` seconds or when closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._closed, timeout):
                return None
            if self._closed:
                return None
            self.counters.taken += 1
            return self._queue.popleft()

    def close(self) -> None:
        """Wake and release every waiting consumer; later ``take`` calls return None."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class LatestSlot(_BoundedSlot):
    """A thread-safe single-item slot that keeps only the newest item.

    ``put`` replaces an item the consumer has not taken yet (counted in
    ``counters.dropped``) and wakes the consumer; ``take`` waits for an item.
    After :meth:`close`, ``take`` returns None immediately and ``put`` is ignored.
    (A bounded FIFO of one item: the oldest held item is the newest one.)
    """

    def __init__(self) -> None:
        super().__init__(1)


class FifoSlot(_BoundedSlot):
    """A bounded first-in-first-out queue with the :class:`LatestSlot` interface.

    Only for the ``queue_size > 0`` benchmark baseline (a node that processes every frame in
    order, as a ROS subscription with history depth N and a synchronous callback would): a
    ``put`` into a full queue drops the *oldest* frame (counted in ``counters.dropped``).
    The node's default stays :class:`LatestSlot` (docs/contracts.md section 3: never queue stale frames).

    Args:
        size: capacity in frames (>= 1).

    Raises:
        ValueError: ``size`` < 1.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        super().__init__(size)
        self.size = int(size)


class CameraInfoMatcher:
    """Pair image messages with CameraInfo messages by header stamp (nanoseconds).

    Modes:
        ``cached``: the CameraInfo whose stamp equals the image's when one was received
            (among the last ``history``), else the latest one, whatever its stamp (the
            default; a rectified camera's intrinsics rarely change).
        ``exact``: the CameraInfo whose stamp equals the image's.
        ``approximate``: the CameraInfo with the nearest stamp, if within ``slop_ns``.

    An image that arrives before its CameraInfo (in ``cached`` mode: before any CameraInfo)
    waits, one image at most; a newer one replaces it and the older is reported as unmatched.

    Not thread-safe: call from the (single-threaded) executor's callbacks only.
    """

    def __init__(self, mode: str = "cached", slop_ns: int = 0, history: int = 30) -> None:
        if mode not in ("cached", "exact", "approximate"):
            raise ValueError(
                f"unknown camera_info_sync mode {mode!r}; use cached, exact or approximate"
            )
        if slop_ns < 0:
            raise ValueError(f"slop must be >= 0 ns, got {slop_ns}")
        self.mode = mode
        self.slop_ns = int(slop_ns) if mode == "approximate" else 0
        self._infos: OrderedDict[int, Any] = OrderedDict()
        self._history = history
        self._latest: Any = None
        self._pending: tuple[int, Any] | None = None

    @property
    def has_info(self) -> bool:
        """True once any CameraInfo arrived."""
        return self._latest is not None

    def add_info(self, stamp_ns: int, info: Any) -> tuple[Any, Any] | None:
        """Store a CameraInfo; returns ``(image, info)`` if it completes a waiting image."""
        self._latest = info
        self._infos[stamp_ns] = info
        self._infos.move_to_end(stamp_ns)
        while len(self._infos) > self._history:
            self._infos.popitem(last=False)
        if self._pending is not None:
            stamp, image = self._pending
            match = self._lookup(stamp)
            if match is not None:
                self._pending = None
                return image, match
        return None

    def add_image(self, stamp_ns: int, image: Any) -> tuple[tuple[Any, Any] | None, Any]:
        """Offer an image.

        Returns:
            ``(pair, unmatched)``: ``pair`` is ``(image, info)`` when a CameraInfo matches now
            (else None, and in exact/approximate mode the image waits); ``unmatched`` is an
            older waiting image that this one displaced (never matched), else None.
        """
        info = self._lookup(stamp_ns)
        if info is not None:
            return (image, info), None
        displaced = None if self._pending is None else self._pending[1]
        self._pending = (stamp_ns, image)
        return None, displaced

    def _lookup(self, stamp_ns: int) -> Any:
        if self.mode == "cached":
            return self._infos.get(stamp_ns, self._latest)
        if self.mode == "exact":
            return self._infos.get(stamp_ns)
        best, best_dt = None, None
        for stamp, info in self._infos.items():
            dt = abs(stamp - stamp_ns)
            if dt <= self.slop_ns and (best_dt is None or dt < best_dt):
                best, best_dt = info, dt
        return best
