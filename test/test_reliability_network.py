"""Nothing leaves the machine (issue 14): ONNX Runtime's telemetry is off wherever the project
imports it, and the node's sockets only reach loopback.

ONNX Runtime resolves its telemetry host from C++ (getaddrinfo), which Python audit hooks do
not see, so the probe is ``strace`` (Debian package; ``.ci/run`` installs it): the system calls
``connect``/``sendto``/``sendmsg`` of a child process are recorded and their destinations
counted. The ONNX Runtime probes inject an error into those calls (``-e inject``), so even a
lookup that the test is there to catch never leaves the machine. Skipped without strace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from joint_perception.ros.local_dds import loopback_environment

REPO = Path(__file__).resolve().parents[1]
STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(
    STRACE is None, reason="strace not installed (.ci/run installs it: apt-get install strace)"
)
NET_CALLS = "connect,sendto,sendmsg,sendmmsg"
_ADDR = re.compile(
    r"sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\),"
    r".*?(?:inet_addr\(\"(?P<v4>[^\"]+)\"\)|inet_pton\(AF_INET6, \"(?P<v6>[^\"]+)\")"
)

# Runs an ONNX Runtime session on the shipped model and stays up long enough for the
# telemetry upload (about 8 s after the session starts with ORT 1.32).
ORT_SESSION = """
import sys, time
sys.path.insert(0, {repo!r})
{imports}
import numpy as np
s = ort.InferenceSession({model!r}, providers=["CPUExecutionProvider"])
s.run(None, {{s.get_inputs()[0].name: np.zeros((1, 3, 120, 160), np.float32)}})
time.sleep(10)
"""


def destinations(trace: str) -> list[tuple[str, int]]:
    """(address, port) of every IPv4/IPv6 destination in an strace log."""
    out = []
    for line in trace.splitlines():
        for m in _ADDR.finditer(line):
            out.append((m["v4"] or m["v6"], int(m["port"])))
    return out


def is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_destinations_parser():
    trace = (
        '12 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.2.3.4")}'
        ", 16) = -1 ENETUNREACH (INJECTED)\n"
        '13 sendto(9, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(7400), sin6_flowinfo='
        'htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 1\n'
        '14 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1\n'
    )
    assert destinations(trace) == [("10.2.3.4", 53), ("::1", 7400)]
    assert not is_loopback("10.2.3.4") and is_loopback("::1") and is_loopback("127.0.0.1")
    assert is_loopback("::ffff:127.0.0.1")


def _traced(tmp_path: Path, name: str, code: str, env: dict) -> subprocess.Popen:
    """Run ``code`` in a child Python under strace; its network calls fail with ENETUNREACH
    (injected), so nothing it tries leaves the machine. The log is ``tmp_path/<name>.trace``."""
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    cmd = [STRACE, "-f", "-qq", "-e", f"trace={NET_CALLS}"]
    cmd += ["-e", f"inject={NET_CALLS}:error=ENETUNREACH", "-o", str(tmp_path / f"{name}.trace")]
    return subprocess.Popen(
        [*cmd, sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_onnxruntime_makes_no_dns_lookup(tmp_path):
    """The package sets ORT_DISABLE_TELEMETRY before onnxruntime loads: an ORT session run
    through the project makes zero DNS connects.

    The control is a name lookup of our own (``socket.getaddrinfo`` of a ``.invalid`` name, its
    connect refused by the injected error) under the same probe: it shows that the probe sees a
    DNS lookup on this machine. Whether ONNX Runtime itself phones home on a given machine (it
    did on the development machine, about 8 s after the session started; it did not on one CI
    machine) is not what is tested, so it is not the control. Skipped where the machine resolves
    names without a DNS socket (``/etc/nsswitch.conf`` without dns, nscd), where the probe is
    blind."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["OMP_NUM_THREADS"] = "1"
    control = _traced(
        tmp_path,
        "control",
        "import socket, contextlib\n"
        "with contextlib.suppress(OSError):\n"
        "    socket.getaddrinfo('jp-probe-control.invalid', 443)\n",
        env,
    )
    out, _ = control.communicate(timeout=60)
    assert control.returncode == 0, out[-2000:]
    control_dns = [d for d in destinations((tmp_path / "control.trace").read_text()) if d[1] == 53]
    if not control_dns:
        pytest.skip("this machine resolves names without a DNS socket: the probe cannot see them")
    project = _traced(
        tmp_path,
        "project",
        ORT_SESSION.format(
            repo=str(REPO),
            imports="from joint_perception.runtime import onnxruntime_backend\n"
            "import onnxruntime as ort",
            model=str(REPO / "models/realtime/model.onnx"),
        ),
        env,
    )
    out, _ = project.communicate(timeout=240)
    assert project.returncode == 0, out[-2000:]
    project_dns = [d for d in destinations((tmp_path / "project.trace").read_text()) if d[1] == 53]
    assert project_dns == []


def _stop_traced(proc: subprocess.Popen) -> None:
    """SIGINT the process strace runs (strace itself would detach and leave it running), wait
    for both; SIGKILL after a timeout."""
    import psutil

    tracees = psutil.Process(proc.pid).children(recursive=True)
    for p in tracees:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        for p in tracees:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        proc.kill()
        proc.wait()
    assert not [p for p in tracees if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_node_sockets_reach_only_loopback(tmp_path):
    """perception_node (ONNX Runtime backend, loopback DDS profile) for a few seconds after it
    is up: every IPv4/IPv6 destination of connect/sendto/sendmsg is loopback; no DNS."""
    env = loopback_environment()
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the package itself must set it
    env["OMP_NUM_THREADS"] = "1"
    log = tmp_path / "node.log"
    trace = tmp_path / "node.trace"
    cmd = [STRACE, "-f", "-qq", "-e", f"trace={NET_CALLS}", "-o", str(trace)]
    cmd += [sys.executable, "-m", "joint_perception.ros.perception_node", "--ros-args"]
    cmd += ["-r", "__ns:=/netprobe", "-p", "backend:=onnxruntime"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while "backend" not in log.read_text(errors="replace"):
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "node did not start"
                time.sleep(0.5)
            time.sleep(12)  # past the telemetry upload of ONNX Runtime (~8 s)
        finally:
            _stop_traced(proc)
    dests = destinations(trace.read_text())
    assert dests, "the probe saw no socket destination at all (DDS uses UDP on loopback)"
    outside = sorted({d for d in dests if not is_loopback(d[0])})
    assert outside == []
    assert [d for d in dests if d[1] == 53] == []
