"""replay leaves nothing behind when it dies (issue 14): the node dies with it (own process
group, parent-death signal), the partial bag of a killed replay is visible and recoverable, an
interrupted bag swap is completed or discarded at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from joint_perception.data.rosbag_io import recover_mcap
from joint_perception.evaluation.replay import run as replay_run
from joint_perception.evaluation.replay.node_process import die_with_parent

REPO = Path(__file__).resolve().parents[1]

PARENT = """
import subprocess, sys, time
sys.path.insert(0, {repo!r})
from joint_perception.evaluation.replay.node_process import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         start_new_session=True, preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(300)
"""

WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
store = get_typestore(Stores.ROS2_KILTED)
String = store.types["std_msgs/msg/String"]
w = Writer({bag!r}, version=8, storage_plugin=StoragePlugin.MCAP)
w.open()
conn = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
raw = store.serialize_cdr(String(data="x" * 50_000), "std_msgs/msg/String")
for i in range(10_000):
    w.write(conn, i, raw)
    if i == 60:
        print("written", flush=True)
time.sleep(300)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_node_child_dies_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(repo=str(REPO)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.is_running()
    assert os.getpgid(child.pid) != os.getpgid(parent.pid)  # its own process group
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        child.wait(timeout=20)
    except psutil.TimeoutExpired:
        child.kill()
        pytest.fail("the child outlived its killed parent")
    assert die_with_parent() is not None


def test_partial_bag_of_a_killed_writer_is_recoverable(tmp_path):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / replay_run.PARTIAL
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO), bag=str(bag)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    mcap = bag / f"{replay_run.PARTIAL}.mcap"
    assert mcap.is_file() and not (bag / "metadata.yaml").exists()  # cut short, not hidden
    with pytest.raises(Exception), Reader(mcap):  # noqa: B017 - rosbags' own error types
        pass
    assert replay_run.recover_partial(tmp_path) == mcap
    with Reader(mcap) as reader:
        stamps = [t for _, t, _ in reader.messages()]
    assert len(stamps) >= 20 and stamps == list(range(len(stamps)))  # whole chunks, in order
    assert recover_mcap(mcap) == 0  # idempotent


def test_clean_start_completes_or_discards_a_swap(tmp_path):
    out = tmp_path
    (out / "output").mkdir()
    (out / "output" / "old").write_text("old bag")
    partial = out / replay_run.PARTIAL
    partial.mkdir()
    (partial / replay_run.RUN_FILE).write_text(json.dumps({"run_id": "abc"}))
    (out / "summary.json").write_text(json.dumps({"run_id": "abc"}))
    stale = out / f".summary.json.{_dead_pid()}.q.tmp"
    stale.write_text("{")
    replay_run._clean_start(out)  # summary written, swap interrupted: complete it
    assert (out / "output" / replay_run.RUN_FILE).exists() and not partial.exists()
    assert not stale.exists()
    partial.mkdir()
    (partial / "x.mcap").write_bytes(b"partial")
    replay_run._clean_start(out)  # a killed recording: discarded, the finished bag stays
    assert not partial.exists() and (out / "output" / replay_run.RUN_FILE).exists()


def _dead_pid() -> int:
    p = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(p.stdout)


def test_an_empty_partial_bag_recovers_as_an_empty_mcap(tmp_path):
    from rosbags.rosbag2 import Reader

    for cut in (b"", b"\x89MC", b"\x89MCAP0\r\n\x01\x05"):  # killed before the header landed
        mcap = tmp_path / "x.mcap"
        mcap.write_bytes(cut)
        recover_mcap(mcap)
        with Reader(mcap) as reader:
            assert list(reader.messages()) == []
    mcap.write_bytes(b"PK\x03\x04 not an mcap")
    with pytest.raises(ValueError, match="not an MCAP file"):
        recover_mcap(mcap)
