"""Shared pytest set-up: loopback-only DDS before rclpy loads, and the real test data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from joint_perception.ros.local_dds import apply_loopback_environment

# Must run before any test module imports rclpy (DESIGN.md section 5).
apply_loopback_environment()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real NYUv2 frames and bags); skips when it is absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set JP_SHARED_DATA)")
    return SHARED_DATA
