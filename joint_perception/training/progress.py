"""Training progress where nobody watches a terminal: one log line per interval instead of
Lightning's progress bar (whose carriage-return redraws fill a redirected log with megabytes
of partial lines).

``train`` keeps the bar on a terminal (``trainer.enable_progress_bar: null``, the default,
means "when stderr is a TTY") and adds :class:`LogProgress` otherwise.
"""

from __future__ import annotations

import logging
import sys
import time

import lightning

__all__ = ["LogProgress", "progress_bar_wanted"]

log = logging.getLogger("joint_perception.train")


def progress_bar_wanted(setting: bool | None, stream=None) -> bool:
    """``setting`` if given, else whether ``stream`` (default ``sys.stderr``) is a terminal."""
    if setting is not None:
        return bool(setting)
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class LogProgress(lightning.Callback):
    """Log ``step N/M (P %), <loss>, <rate> steps/s, ETA`` every ``every_n_steps`` optimiser
    steps, and the validation metrics after each validation, through the
    ``joint_perception.train`` logger.

    Args:
        every_n_steps: logging interval in optimiser steps (>= 1).

    Raises:
        ValueError: ``every_n_steps`` < 1.
    """

    def __init__(self, every_n_steps: int = 50):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self._t0: float | None = None
        self._step0 = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.monotonic()
        self._step0 = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        rate = (step - self._step0) / max(time.monotonic() - (self._t0 or 0.0), 1e-9)
        parts = [f"step {step}" + (f"/{total} ({100.0 * step / total:.0f} %)" if total else "")]
        loss = trainer.callback_metrics.get("train/total_step")
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        parts.append(f"{rate:.2f} steps/s")
        if total and rate > 0:
            parts.append(f"ETA {(total - step) / rate / 60.0:.0f} min")
        log.info(", ".join(parts))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        vals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if vals:
            log.info(
                "validation at step %d: %s",
                trainer.global_step,
                ", ".join(f"{k[4:]} {v:.4f}" for k, v in sorted(vals.items())),
            )
