"""Read torch files (``model.pt``, Lightning ``.ckpt``, ``.pth`` weights) without running code
from them.

A torch file is a pickle; ``torch.load(weights_only=False)`` executes whatever the pickle asks
for (``os.system``, any importable callable), so a checkpoint from a download, a colleague or a
shared drive is code. Every torch file the project reads goes through :func:`load_weights`,
which only accepts tensors, containers and primitive values (``weights_only=True``). There is
no fallback and no switch: a file that needs more is refused with
:class:`UntrustedCheckpointError` naming the file and the object it asked for (re-save it as a
plain state_dict, e.g. ``torch.save({"state_dict": ckpt["state_dict"], ...}, path)`` in a
trusted session).

torch is imported lazily: this core module is importable on a robot without PyTorch.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

__all__ = ["CheckpointError", "UntrustedCheckpointError", "load_weights"]


class CheckpointError(ValueError):
    """A torch file that cannot be read: the message names the file and the reason.

    A ``ValueError``, so every command's "bad input" path (exit status 2 of ``train``,
    ``evaluate``, the node's "cannot start") reports it as a message, not a traceback.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UntrustedCheckpointError(CheckpointError):
    """The file asks the unpickler for objects other than tensors and plain values (it would
    run code if loaded with ``weights_only=False``); it was not loaded."""


def load_weights(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        UntrustedCheckpointError: the pickle references a global that is not allowed (the
            message names it); nothing from the file ran.
        CheckpointError: not a torch file, truncated or corrupt.
    """
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torch file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # garbage, not a pickle asking for a callable
            raise CheckpointError(path, f"not a readable torch file ({_first_line(exc)})") from exc
        raise UntrustedCheckpointError(
            path,
            "refused: it holds pickled objects other than tensors and plain values, which would "
            f"run code when loaded ({_first_line(exc)}). Only weights_only files are read; "
            "re-save its state_dict in a session you trust",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - legacy/zip readers raise KeyError, EOFError, ...
        raise CheckpointError(path, f"not a readable torch file ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        low = line.lower()
        if line and not low.startswith(("weights only load failed", "please file", "check the")):
            return line[:300]
    return text.splitlines()[0][:300] if text else type(exc).__name__
