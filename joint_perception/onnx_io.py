"""Reading an ONNX file with a clear error: the one place a user's ``model.onnx`` is parsed.

A truncated or foreign file makes protobuf raise ``DecodeError`` (not a ``ValueError``), which
the command-line tools would show as a traceback; :func:`load_onnx` names the file instead.
"""

from __future__ import annotations

import os
from pathlib import Path


def load_onnx(path: str | os.PathLike, load_external_data: bool = True):
    """Parse an ONNX model file.

    Args:
        path: the ``.onnx`` file.
        load_external_data: also read tensors stored beside it (``onnx.load``'s option).

    Returns:
        ``onnx.ModelProto``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable ONNX model (truncated, another format); names the file.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ONNX model not found: {p}")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and kin
        raise ValueError(f"{p}: not a readable ONNX model ({exc})") from exc
