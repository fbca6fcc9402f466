"""The settings of one replay run (:class:`ReplayOptions`), mirroring the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from joint_perception.evaluation.replay.topics import DEFAULT_NAMESPACE, ReplayTopics


@dataclass
class ReplayOptions:
    """Everything :func:`joint_perception.evaluation.replay.replay` needs; mirrors the command
    line."""

    bag: Path
    out: Path
    rate_hz: float | None = None
    params_file: Path | None = None
    overrides: list[str] = field(default_factory=list)
    topics: ReplayTopics = field(default_factory=ReplayTopics)
    compressed: bool = False
    namespace: str = DEFAULT_NAMESPACE
    startup_timeout_s: float = 120.0
    drain_timeout_s: float = 20.0
    settle_s: float = 1.5
    max_depth: float = 10.0
    progress: bool = True
    frames: int | None = None
    labels_dir: Path | None = None
    labels_topic: str | None = None
    report: bool = True
    report_samples: int = 3
    peak: bool = False
    max_missed: float = 0.05
    peak_min_rate_hz: float = 2.0
    peak_max_rate_hz: float = 64.0
    peak_frames: int = 30
    #: free space (MiB) kept on the output bag's file system: recording stops before using it
    disk_reserve_mb: float = 256.0
