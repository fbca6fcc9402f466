"""Atomic file writes: a reader sees the old file or the complete new one, never half of it.

Every file the project writes for a user (models, metadata, engines, checkpoints, reports)
goes through these helpers: write to a temporary file in the same directory, flush and fsync,
then ``os.replace`` (atomic on POSIX within one file system). A set of files that belong
together (an exported model: ``model.onnx``, ``model.pt``, ``metadata.json``) is written into a
temporary sibling directory and swapped in as a whole (:func:`atomic_directory`).

Temporary names are ``.<name>.<pid>.<random>.tmp``: a writer killed with ``kill -9`` leaves
one behind, and :func:`remove_stale_temps` (called by the commands at start) removes those
whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; move it over ``path`` on success.

    If the block raises, the temporary file is removed and ``path`` is left untouched.

    Args:
        path: destination file; its parent directory is created if missing.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Raises:
        ValueError: for a mode that is not a write mode.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports 'wb' and 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, usual_file_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


#: ``.<name>.<pid>.<random>.tmp`` (and ``...old.tmp``): a temporary of :func:`atomic_open` or
#: :func:`atomic_directory`
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+(?:\.old)?\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries that writers killed before their rename left in ``directory``.

    Only entries named like this module's temporaries (``.<name>.<pid>.<random>.tmp``) whose
    process no longer runs are removed (files and directories), so a concurrent writer's
    temporary survives. ``name`` limits the clean-up to the temporaries of that target.

    Returns:
        The removed paths.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        m = _TEMP_RE.match(entry.name)
        if not m or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def replace_directory(new: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Put the directory ``new`` at ``path`` (same file system), replacing a directory there.

    An existing ``path`` is exchanged with ``new`` in one atomic step (Linux
    ``renameat2(RENAME_EXCHANGE)``) and then deleted; elsewhere it is renamed away to a
    temporary name, ``new`` renamed in, and the old one deleted. Returns ``path``.
    """
    new, path = Path(new), Path(path)
    if path.is_dir() and _exchange(new, path):
        _fsync_dir(path.parent)
        shutil.rmtree(new, ignore_errors=True)  # now the old directory
        return path
    old = None
    if path.is_dir():
        old = path.parent / f"{_temp_prefix(path)}{os.urandom(4).hex()}.old.tmp"
        os.rename(path, old)
    os.rename(new, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory in a temporary sibling and put it at ``path`` as a whole.

    Yields the temporary directory; when the block ends normally its files are fsynced and it
    replaces ``path``: an existing directory is exchanged with it in one atomic step
    (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere the old one is renamed away, the new
    one renamed in, then the old one deleted). A reader sees the complete old directory or the
    complete new one. If the block raises (or the process dies), ``path`` is untouched and the
    temporary is removed (now, or by :func:`remove_stale_temps` at the next start).

    Raises:
        NotADirectoryError: ``path`` exists and is not a directory.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        _fsync_dir(tmp)
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_file_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 minus the umask): for temporary
    files made with ``tempfile.mkstemp`` (0600) before they are moved into place."""
    return 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON (sorted keys off, NaN refused) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False, default=_json_default) + "\n"
    return atomic_write_text(path, text)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
