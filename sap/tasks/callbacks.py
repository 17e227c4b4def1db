"""Trainer callbacks that make a SAP run safe to stop and resume (``sap fit`` adds all three).

- :class:`RandomState` saves the random number generators with every checkpoint and puts
  them back when a run resumes, so that a run resumed from an end-of-epoch checkpoint draws
  the same patches and augmentations as one that never stopped (on CPU: bit for bit).
- :class:`SignalCheckpoint` turns Ctrl+C (SIGINT) and SIGTERM into a clean stop: the current
  batch finishes, ``last.ckpt`` is written, and the run ends with the signal's exit status
  and a message saying where the checkpoint is (SIGKILL cannot be caught: the last epoch's
  checkpoint is what remains).
- :class:`FinalValidation` validates the last epoch whatever ``check_val_every_n_epoch`` says,
  so every run logs its validation metrics at least once.

Lightning owns the loop and the checkpoint format; these only add what it leaves out.
Resume semantics and what is bitwise identical: docs/training.md.
"""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


def collect_rng_states() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python RNG states as tensors and plain values.

    Plain values only, so that ``torch.load(weights_only=True)`` reads them back.
    """
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(python_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`collect_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomState(Callback):
    """Save the RNG states in every checkpoint; restore them as soon as a run resumes.

    Restored while Lightning restores the checkpoint, before it builds the training data
    iterator: on resume Lightning draws the first resumed epoch's patches while setting up
    the data, where a run that never stopped draws them when that epoch starts — both then
    draw from the same state. Under DDP the checkpoint holds rank 0's states and every rank
    restores them.
    """

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_states(dict(state_dict))


class SignalCheckpoint(Callback):
    """Stop cleanly on SIGINT or SIGTERM: finish the batch, write ``last.ckpt``, say where.

    The checkpoint goes to the first :class:`~lightning.pytorch.callbacks.ModelCheckpoint`'s
    folder as ``last.ckpt`` (what ``--ckpt_path last`` finds), or to
    ``<default_root_dir>/checkpoints``. A second Ctrl+C interrupts at once, without saving.
    After ``fit`` ends, :attr:`stopped_by` is the signal (or ``None``) and :attr:`checkpoint`
    the file written (or ``None``: stopped before the first step).
    """

    def __init__(self) -> None:
        self.stopped_by: signal.Signals | None = None
        self.checkpoint: Path | None = None
        self._previous: dict[signal.Signals, Any] = {}

    # -------------------------------------------------------------- signal handlers
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped_by, self.checkpoint = None, None
        if threading.current_thread() is not threading.main_thread():
            return
        # The Trainer's own SIGTERM handler is installed by now: ours records the signal and
        # calls it; Ctrl+C calls it too, so that both signals stop the same way.
        for signum, handler in (
            (signal.SIGINT, self._on_sigint),
            (signal.SIGTERM, self._on_sigterm),
        ):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(signum)
        self._trainer_sigterm(frame)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.stopped_by is not None:
            self._restore_handlers()
            raise KeyboardInterrupt
        self.stopped_by = signal.SIGINT
        self._trainer_sigterm(frame)

    def _trainer_sigterm(self, frame: Any) -> None:
        handler = self._previous.get(signal.SIGTERM)
        if callable(handler):
            handler(signal.SIGTERM, frame)

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    # -------------------------------------------------------------- saving
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if trainer.received_sigterm and self.checkpoint is None:
            self._save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if (
            trainer.received_sigterm
            and self.checkpoint is None
            and not trainer.sanity_checking
            and trainer.global_step > 0
        ):
            self._save(trainer)
        self._restore_handlers()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def _save(self, trainer: L.Trainer) -> None:
        if self.stopped_by is None:
            self.stopped_by = signal.SIGTERM
        path = last_checkpoint_path(trainer)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                callback.last_model_path = str(path)
        trainer.save_checkpoint(path, weights_only=False)
        self.checkpoint = path


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where this run's ``last.ckpt`` goes: the ModelCheckpoint folder that keeps one."""
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    keeping_last = [cb for cb in callbacks if cb.save_last] or callbacks
    name = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION
    if keeping_last and keeping_last[0].dirpath:
        return Path(keeping_last[0].dirpath) / name
    return Path(trainer.default_root_dir) / "checkpoints" / name


def run_directory(trainer: L.Trainer) -> Path:
    """The folder of this run, holding its ``checkpoints`` folder (as Lightning lays it out).

    A ModelCheckpoint ``dirpath`` given by the user decides; otherwise the first logger's
    ``<save_dir>/<name>/<version>``, or ``default_root_dir`` without a logger.
    """
    for callback in trainer.checkpoint_callbacks:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath:
            path = Path(dirpath)
            return path.parent if path.name == "checkpoints" else path
    if trainer.loggers:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version
    return Path(trainer.default_root_dir)


class FinalValidation(Callback):
    """Validate the last epoch even when ``check_val_every_n_epoch`` would skip it.

    A short run (a sweep trial, a smoke test) with ``max_epochs`` below or not a multiple of
    ``check_val_every_n_epoch`` would otherwise end without validation metrics.
    """

    def __init__(self) -> None:
        self._interval: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interval = trainer.check_val_every_n_epoch
        last = trainer.max_epochs is not None and trainer.current_epoch == trainer.max_epochs - 1
        if last and interval and interval > 1 and trainer.max_epochs % interval:
            self._interval = interval
            trainer.check_val_every_n_epoch = 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._interval is not None:
            trainer.check_val_every_n_epoch = self._interval
            self._interval = None


__all__ = [
    "FinalValidation",
    "RandomState",
    "SignalCheckpoint",
    "collect_rng_states",
    "last_checkpoint_path",
    "run_directory",
    "set_rng_states",
]
