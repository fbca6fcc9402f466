"""Newest-frame-only slot and CameraInfo pairing (ROS-free)."""

from __future__ import annotations

import threading
import time

import pytest

from joint_perception.ros.frame_buffer import CameraInfoMatcher, LatestSlot


def test_slot_keeps_only_the_newest_and_counts_overwrites():
    slot = LatestSlot()
    assert slot.put("a") is False
    assert slot.put("b") is True
    assert slot.put("c") is True
    assert slot.take(timeout=0) == "c"
    assert slot.take(timeout=0.01) is None
    assert slot.put("d") is False
    assert (slot.counters.received, slot.counters.taken, slot.counters.dropped) == (4, 1, 2)


def test_slot_wakes_a_waiting_consumer_and_close_releases_it():
    slot = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    t.start()
    time.sleep(0.05)
    slot.put(42)
    t.join(2)
    assert got == [42]
    # no timeout: only close() can release this consumer (no wall-clock bound asserted)
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=None)), daemon=True)
    t.start()
    time.sleep(0.05)
    slot.close()
    t.join(30)
    assert not t.is_alive() and got == [42, None]
    assert slot.put(1) is False and slot.take(0) is None


def test_cached_mode_uses_latest_info_and_needs_one():
    m = CameraInfoMatcher("cached")
    assert m.add_image(10, "img0") == (None, None)  # waits for the first CameraInfo
    assert m.add_image(11, "img1") == (None, "img0")  # img0 never got one
    assert not m.has_info
    assert m.add_info(5, "infoA") == ("img1", "infoA")
    assert m.add_info(7, "infoB") is None
    assert m.add_image(99, "img2") == (("img2", "infoB"), None)


def test_exact_mode_pairs_same_stamp_in_either_order():
    m = CameraInfoMatcher("exact")
    assert m.add_info(100, "i100") is None
    assert m.add_image(100, "a") == (("a", "i100"), None)
    assert m.add_image(200, "b") == (None, None)  # waits for its info
    assert m.add_info(150, "i150") is None  # not its stamp
    assert m.add_image(300, "c") == (None, "b")  # b displaced, never matched
    assert m.add_info(300, "i300") == ("c", "i300")


def test_approximate_mode_takes_nearest_within_slop():
    m = CameraInfoMatcher("approximate", slop_ns=10)
    m.add_info(100, "i100")
    m.add_info(118, "i118")
    assert m.add_image(109, "a") == (("a", "i100"), None)  # 9 ns from both: the tie keeps the older
    assert m.add_image(112, "b") == (("b", "i118"), None)  # 6 away beats 12
    assert m.add_image(140, "c") == (None, None)  # 22 away: waits
    assert m.add_info(145, "i145") == ("c", "i145")


def test_matcher_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown camera_info_sync mode 'sometimes'"):
        CameraInfoMatcher("sometimes")
    with pytest.raises(ValueError, match="slop must be >= 0"):
        CameraInfoMatcher("approximate", slop_ns=-1)


def test_fifo_slot_keeps_order_and_drops_the_oldest_when_full():
    from joint_perception.ros.frame_buffer import FifoSlot

    q = FifoSlot(3)
    assert [q.put(i) for i in range(5)] == [False, False, False, True, True]
    assert [q.take(0.01) for _ in range(3)] == [2, 3, 4]
    assert q.take(0.01) is None
    assert (q.counters.received, q.counters.taken, q.counters.dropped) == (5, 3, 2)
    q.put(7)
    q.close()
    assert q.take(0.01) is None and q.put(8) is False
    with pytest.raises(ValueError, match="queue size"):
        FifoSlot(0)
