"""Shared pytest set-up: loopback-only DDS before rclpy loads, and the real test data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from joint_perception.ros.local_dds import apply_loopback_environment

# Must run before any test module imports rclpy (docs/contracts.md section 6).
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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small untrained ``realtime`` network exported once per session (read-only: copy first).

    Seed 0, 40 classes, width_mult 0.35, decoder 16 / head 8 channels, ONNX at 64x80 input
    (``model.onnx`` + ``metadata.json`` from :func:`joint_perception.export.onnx_export.export_onnx`).
    The global torch RNG is left as it was.
    """
    import torch

    from joint_perception.export.onnx_export import export_onnx
    from joint_perception.models.registry import build_model

    out = tmp_path_factory.mktemp("tiny_realtime")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build_model(
            "realtime", num_classes=40, width_mult=0.35, decoder_channels=16, head_channels=8
        )
    export_onnx(net, out, input_size=(64, 80))
    return out


@pytest.fixture
def single_torch_thread():
    """One torch intra-op thread while a test runs (restored after): on the shared 2-core
    machine, two threads competing with other jobs made each network step 10-50x slower.
    Use with ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shipped() -> Path:
    """The shipped default model's export directory (models/realtime)."""
    return REPO_ROOT / "models" / "realtime"


@pytest.fixture(scope="session")
def shipped_frames(shared_data, shipped):
    """The 10 NYUv2 test frames of ``nyuv2_test10_mcap`` at the shipped model's input size, as
    calibration / gate frames (skips without ../shared)."""
    from joint_perception.export.calibration import CalibrationFrames
    from joint_perception.metadata import load_metadata

    meta = load_metadata(shipped)
    return CalibrationFrames.from_bag(
        shared_data / "bags" / "nyuv2_test10_mcap", (meta.input_height, meta.input_width), 10
    )
