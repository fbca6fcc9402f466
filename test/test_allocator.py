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
