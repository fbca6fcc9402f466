"""One replay run end to end: inputs, the measured session (fixed rate or peak search), the
output bag, summary, accuracy, report and the summary files.

The output bag is recorded to ``DIR/output.partial/`` (visible, MCAP). When the session has
ended it is closed and scored, ``summary.json``/``summary.md`` and the report are written
(atomically, naming ``DIR/output`` and the run's ``run_id``), and only then is the bag swapped in
as ``DIR/output`` (its file renamed ``output.mcap``; one atomic exchange) with a
``replay_run.json`` naming the same ``run_id``:
a kill before the swap leaves the previous bag and summary untouched beside a complete
``output.partial``; the next replay into ``DIR`` completes an interrupted swap whose summary is
already written (same ``run_id``) and discards any other partial bag. A replay killed while
recording leaves ``output.partial/output.partial.mcap`` without its footer:
:func:`recover_partial` (``replay --recover DIR``) makes it readable by ``rosbags``
(``rosbags.rosbag2.Reader(<the .mcap file>)``). Temporaries of killed writes are removed at
start. A recording stopped by a full output disk (``ReplayOptions.disk_reserve_mb``, see
:class:`~joint_perception.evaluation.replay.recorder.Recorder`) fails the run: the partial bag
is removed and the previous bag and summary are kept.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from joint_perception.evaluation.rates import loop_schedule
from joint_perception.evaluation.replay.bag_input import InputFrame, load_input_frames
from joint_perception.evaluation.replay.markdown import write_summary
from joint_perception.evaluation.replay.node_process import NODE_NAME
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.peak import peak_search
from joint_perception.evaluation.replay.run_report import write_run_report
from joint_perception.evaluation.replay.scoring import depth_metrics, score_outputs
from joint_perception.evaluation.replay.session import ReplaySession
from joint_perception.evaluation.replay.summary import model_metadata, summarise
from joint_perception.evaluation.replay.topics import namespaced
from joint_perception.io_utils import (
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
    replace_directory,
)

DEFAULT_NUM_CLASSES = 40  # when the node's model metadata cannot be read


@dataclass
class _Measured:
    """What the session measured: the summary and the sends it describes."""

    summary: dict
    sent: dict[int, float]
    schedule: list[tuple[int, int]]
    peak: dict | None
    session: ReplaySession


def _load_inputs(opts: ReplayOptions) -> tuple[list[InputFrame], str]:
    """The bag's frames and image type; checks the labelled folder exists."""
    frames, image_type = load_input_frames(opts.bag, opts.topics, opts.compressed)
    if not frames:
        raise ValueError(f"{opts.bag}: no image messages to replay")
    if opts.labels_dir is not None and not Path(opts.labels_dir).is_dir():
        raise FileNotFoundError(f"labelled folder not found: {opts.labels_dir}")
    return frames, image_type


def _measure(
    opts: ReplayOptions, frames: list[InputFrame], image_type: str, bag_dir: Path
) -> _Measured:
    """Run the session (recording to ``bag_dir``) and summarise it."""
    n = opts.frames if opts.frames is not None else len(frames)
    schedule = loop_schedule([f.stamp_ns for f in frames], n)
    peak = None
    with ReplaySession(opts, image_type, bag_dir) as session:
        if opts.peak:
            peak, sent, process, schedule, elapsed = peak_search(session, frames, opts)
        else:
            sent, process, elapsed = session.run(frames, schedule, opts.rate_hz)
        session.wait_for_diagnostics()
        node_fqn = namespaced(opts.namespace, NODE_NAME)
        summary = summarise(
            frames,
            sent,
            session.recorder,
            node_fqn,
            elapsed,
            image_type,
            process,
            session.all_sent,
        )
    return _Measured(summary, sent, schedule, peak, session)


PARTIAL = "output.partial"  # the bag being recorded (directory and, + .mcap, its file)
OUTPUT = "output"
RUN_FILE = "replay_run.json"  # {"run_id"} inside a finished bag directory


def _run_id_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def _clean_start(out: Path) -> None:
    """Remove temporaries of killed writes; finish an interrupted bag swap whose summary is
    written (same run_id), else discard the partial bag of a killed replay."""
    remove_stale_temps(out)
    partial = out / PARTIAL
    if not partial.exists():
        return
    run_id = _run_id_of(partial / RUN_FILE)
    if run_id is not None and run_id == _run_id_of(out / "summary.json"):
        replace_directory(partial, out / OUTPUT)
        return
    shutil.rmtree(partial, ignore_errors=True)


def recover_partial(out: str | os.PathLike) -> Path:
    """Make the partial bag of a killed replay in ``out`` readable (see
    :func:`joint_perception.data.rosbag_io.recover_mcap`); returns the ``.mcap`` file.

    Raises:
        FileNotFoundError: no partial bag in ``out``.
    """
    from joint_perception.data.rosbag_io import recover_mcap

    mcap = Path(out) / PARTIAL / f"{PARTIAL}.mcap"
    if not mcap.is_file():
        raise FileNotFoundError(f"no partial bag at {mcap}")
    recover_mcap(mcap)
    return mcap


def _check_recorded(recorder, partial: Path, out: Path) -> None:
    """Raise ``OSError(ENOSPC)`` (after removing the partial bag, to give its space back) when
    the recorder stopped writing the output bag; ``out/output`` of an earlier run is kept."""
    if recorder.write_error is None:
        return
    shutil.rmtree(partial, ignore_errors=True)
    frames = recorder.frames_received()
    per_frame = (
        f"; the outputs of one frame are ~{recorder.bytes_received / frames / 2**20:.1f} MiB"
        if frames
        else ""
    )
    kept = (
        f" ({out / OUTPUT}, an earlier run's bag, is untouched)" if (out / OUTPUT).is_dir() else ""
    )
    raise OSError(
        errno.ENOSPC,
        f"recording the output bag stopped after {recorder.bytes_written / 2**20:.0f} MiB: "
        f"{recorder.write_error}{per_frame}. The partial bag was removed{kept}; free space "
        "or give --out on a larger disk",
    )


def _name_bag_file(bag: Path) -> None:
    """Rename the finished bag's storage file ``output.partial.mcap`` (rosbags names it after
    the directory it is recorded in) to ``output.mcap`` and update ``metadata.yaml``. A kill
    in between leaves a partial bag without its ``replay_run.json``: discarded at the next
    start."""
    import yaml

    old, new = f"{PARTIAL}.mcap", f"{OUTPUT}.mcap"
    meta_path = bag / "metadata.yaml"
    if not (bag / old).is_file() or not meta_path.is_file():
        return
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    info["relative_file_paths"] = [new if p == old else p for p in info["relative_file_paths"]]
    for f in info.get("files") or []:
        if f.get("path") == old:
            f["path"] = new
    os.replace(bag / old, bag / new)
    atomic_write_text(meta_path, yaml.safe_dump(meta, sort_keys=False))


def _check_outputs(summary: dict, node_log: Path, partial: Path) -> None:
    """Raise RuntimeError (after removing the partial bag; an earlier run's results stay)
    when the node published nothing for the frames sent: the node's warnings say why."""
    if summary["frames_out"] > 0:
        return
    shutil.rmtree(partial, ignore_errors=True)
    try:
        lines = node_log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    why = [ln for ln in lines if "WARN" in ln or "ERROR" in ln][-5:]
    raise RuntimeError(
        f"the node published no output for the {summary['frames_in']} frames sent; its "
        f"warnings ({node_log}):\n  " + ("\n  ".join(why) if why else "(none)")
    )


def _swap_bag(partial: Path, out: Path, run_id: str) -> Path:
    """Replace ``out/output`` with the finished bag ``partial`` (its file renamed
    ``output.mcap``) in one step; returns it."""
    _name_bag_file(partial)
    atomic_write_json(partial / RUN_FILE, {"run_id": run_id})
    return replace_directory(partial, out / OUTPUT)


def replay(opts: ReplayOptions) -> dict:
    """Run the whole replay; returns the summary (also written to ``opts.out``, with the
    report and the output bag).

    A fixed-rate run sends ``opts.frames`` frames (the bag looped, re-stamped) at
    ``opts.rate_hz`` (recorded timing when None); with ``opts.peak`` the peak-throughput
    search runs instead and the summary describes its best passing trial.

    Raises:
        FileNotFoundError / ValueError: bad bag, topics or labelled folder.
        RuntimeError: the node exited early, its topics never matched (log tail included) or
            it published nothing for the frames sent (its warnings included).
        OSError: the output bag could not be written: ``errno.ENOSPC`` when recording stopped
            at the disk reserve or a failed write (the partial bag is removed first).
    """
    from joint_perception.allocator import keep_freed_memory
    from joint_perception.data.rosbag_io import bag_sha256

    keep_freed_memory()  # the recorder receives ~12 MB per 640x480 frame: no page faults

    frames, image_type = _load_inputs(opts)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_start(out)
    partial = out / PARTIAL
    run_id = uuid.uuid4().hex
    m = _measure(opts, frames, image_type, partial)
    _check_recorded(m.session.recorder, partial, out)
    _check_outputs(m.summary, m.session.node.log_path, partial)
    final = out / OUTPUT
    summary = m.summary
    summary.update(
        run_id=run_id,
        bag=str(opts.bag),
        bag_sha256=bag_sha256(opts.bag),
        output_bag=str(final),
        node_exit_code=m.session.exit_code,
        rate_hz=opts.rate_hz,
        compressed=opts.compressed,
        peak=m.peak,
        load_average_1_5_15_min=os.getloadavg(),
    )
    meta = model_metadata(summary["node"])
    num_classes = meta.num_classes if meta and meta.num_classes else DEFAULT_NUM_CLASSES
    class_names = meta.class_names if meta else None
    accuracy, samples = score_outputs(
        opts, frames, m.schedule, m.sent, partial, num_classes, class_names
    )
    summary["accuracy"] = accuracy
    summary["depth_metrics"] = depth_metrics(accuracy)
    if opts.report:
        arrivals = m.session.recorder.arrivals(summary["primary_output"] or "")
        html = write_run_report(
            out, opts, summary, accuracy, m.sent, arrivals, samples, meta, num_classes
        )
        summary["report"] = str(html)
    write_summary(out, summary)  # before the swap: see the module docstring
    _swap_bag(partial, out, run_id)
    return summary
