"""When each frame is sent, and the send loop.

A schedule (``[(bag frame index, header stamp ns), ...]`` from
:func:`joint_perception.evaluation.rates.loop_schedule`) is sent at a fixed rate or with the
recorded timing, against absolute deadlines
(:func:`joint_perception.evaluation.rates.pace_schedule`): each frame's CameraInfo, then its
image, with the wall time of the image send noted per stamp.
"""

from __future__ import annotations

import time

from joint_perception.evaluation.rates import loop_schedule, pace_schedule
from joint_perception.evaluation.replay.bag_input import InputFrame
from joint_perception.evaluation.replay.recorder import Recorder


def send_due_times(schedule: list[tuple[int, int]], rate_hz: float | None) -> list[float]:
    """Offsets (s) at which to send each scheduled frame: ``i / rate_hz``, or, without a rate,
    the recorded timing (header stamps relative to the first scheduled one; looped passes keep
    the bag's frame spacing)."""
    if rate_hz:
        return [i / rate_hz for i in range(len(schedule))]
    if not schedule:
        return []
    first = schedule[0][1]
    return [(stamp - first) * 1e-9 for _, stamp in schedule]


def publish_frames(
    recorder: Recorder,
    frames: list[InputFrame],
    rate_hz: float | None = None,
    progress: bool = True,
    schedule: list[tuple[int, int]] | None = None,
) -> dict[int, float]:
    """Publish each scheduled frame's CameraInfo then image, paced by
    :func:`joint_perception.evaluation.rates.pace_schedule` (absolute deadlines).

    Args:
        recorder: publishes the inputs.
        frames: the bag's frames.
        rate_hz: fixed rate, or None for the recorded timing.
        progress: tqdm progress bar.
        schedule: ``[(frame index, header stamp ns), ...]`` from
            :func:`joint_perception.evaluation.rates.loop_schedule` (default: every frame once,
            recorded stamps). A frame sent with another stamp than recorded is re-stamped
            (image and CameraInfo shifted alike) so that outputs pair with sends by stamp.

    Returns:
        ``{header stamp ns: wall time (s) just before the image was published}``.
    """
    from tqdm import tqdm

    if schedule is None:
        schedule = loop_schedule([f.stamp_ns for f in frames], len(frames)) if frames else []
    sent: dict[int, float] = {}
    bar = tqdm(total=len(schedule), desc="replay", unit="frame", disable=not progress)

    def publish(i: int) -> None:
        idx, stamp = schedule[i]
        image, info = frames[idx].restamped(stamp)
        if info is not None:
            recorder.pub_info.publish(info)
        sent[stamp] = time.time()
        recorder.pub_image.publish(image)
        bar.update()

    try:
        pace_schedule(send_due_times(schedule, rate_hz), publish)
    finally:
        bar.close()
    return sent
