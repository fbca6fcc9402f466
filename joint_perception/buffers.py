"""Per-frame arrays that live across frames: no multi-MB allocation (and page faults) per frame.

An :class:`OutputBuffers` hands out named numpy arrays; asking again for the same name, shape
and dtype returns the same memory, so a pipeline that writes its outputs in place allocates
only when the frame size changes. Each array is a view over an ``array.array('B')``
(:meth:`OutputBuffers.storage`), the value a ROS message's ``uint8[]`` field holds without a
copy (rclpy serialises it with one memcpy), so a message can publish the buffer directly.

The arrays are overwritten by the next frame that uses the same buffers: a consumer that keeps
a result beyond that must copy it. Not thread-safe: one :class:`OutputBuffers` per worker.
"""

from __future__ import annotations

import array

import numpy as np


class OutputBuffers:
    """Named, reusable arrays backed by ``array.array('B')`` storage (see the module doc).

    Attributes:
        allocations: how many times storage was (re)allocated; constant once the frame size
            is steady (tests use it to check that nothing is allocated per frame).
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._storage: dict[str, array.array] = {}
        self.allocations = 0

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """The C-contiguous array ``name`` of ``shape`` / ``dtype`` (contents undefined:
        whatever the previous frame left), allocated when first asked for or when the shape
        or dtype changed.

        Raises:
            ValueError: a negative dimension.
        """
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"buffer {name!r}: negative dimension in {shape}")
        dtype = np.dtype(dtype)
        arr = self._arrays.get(name)
        if arr is not None and arr.shape == shape and arr.dtype == dtype:
            return arr
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        store = array.array("B", bytes(nbytes))  # a fresh object: old views stay valid
        arr = np.frombuffer(store, dtype=dtype).reshape(shape) if nbytes else np.empty(shape, dtype)
        self._arrays[name], self._storage[name] = arr, store
        self.allocations += 1
        return arr

    def storage(self, name: str) -> array.array:
        """The ``array.array('B')`` behind :meth:`array` ``name`` (its bytes, C order).

        Raises:
            KeyError: no array of that name yet.
        """
        return self._storage[name]

    def names(self) -> list[str]:
        """Names of the arrays held."""
        return list(self._arrays)
