"""allocator: glibc malloc thresholds set from Python and passed to child processes."""

import platform

import pytest

from joint_perception import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_keep_freed_memory_sets_the_thresholds_on_glibc():
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True


def test_malloc_environment_adds_without_overriding():
    env = allocator.malloc_environment({"PATH": "/bin", "MALLOC_TRIM_THRESHOLD_": "1"})
    assert env["PATH"] == "/bin"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "1"
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(allocator.MMAP_THRESHOLD_BYTES)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_returns_kept_buffers_to_the_kernel():
    """With the thresholds raised, 128 freed 1 MiB buffers stay resident; one
    release_freed_memory() hands at least 64 MiB of them back."""
    psutil = pytest.importorskip("psutil")
    allocator.keep_freed_memory()
    proc = psutil.Process()
    blocks = [bytearray(b"\x01") * 2**20 for _ in range(128)]
    del blocks
    kept = proc.memory_info().rss
    allocator.release_freed_memory()
    assert kept - proc.memory_info().rss >= 64 * 2**20
