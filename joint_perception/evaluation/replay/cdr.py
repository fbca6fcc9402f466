"""The std_msgs/Header at the start of a CDR-serialised message, read without a type support.

Replay keeps every message as raw CDR (no deserialisation on the hot path). Each
sensor_msgs type it publishes or records starts with a Header, so the header stamp and
frame_id (what pairs outputs with inputs) can be read from the bytes directly. Rewriting the
stamp is :func:`joint_perception.evaluation.rates.restamp_cdr`.
"""

from __future__ import annotations

import struct


def header_from_cdr(data: bytes | memoryview) -> tuple[int, str]:
    """``(stamp_ns, frame_id)`` of a CDR-serialised message that starts with std_msgs/Header.

    Every sensor_msgs type used here starts with a Header: after the 4-byte encapsulation
    (CDR little- or big-endian), int32 sec, uint32 nanosec, uint32 length + frame_id bytes.

    Raises:
        ValueError: buffer too short or unknown encapsulation.
    """
    buf = bytes(data[:4096])
    if len(buf) < 16 or buf[0] != 0 or buf[1] not in (0, 1):
        raise ValueError("not a CDR buffer with a std_msgs/Header")
    endian = "<" if buf[1] == 1 else ">"
    sec, nsec, n = struct.unpack_from(endian + "iII", buf, 4)
    frame_id = buf[16 : 16 + max(n - 1, 0)].decode("utf-8", "replace")
    return sec * 1_000_000_000 + nsec, frame_id
