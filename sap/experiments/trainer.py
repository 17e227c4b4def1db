"""How the experiments run Lightning on a CPU and record each run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sap.io import write_text_atomic


def cpu_trainer(
    out_dir: Path,
    max_epochs: int,
    name: str,
    progress: bool,
    accelerator: str = "cpu",
    precision: str = "32-true",
) -> Any:
    """A one-device Trainer (CPU by default) writing CSV logs and ``<out_dir>/<name>/checkpoints/last.ckpt``.

    No validation loop: the experiments evaluate on held-out cases after fitting.
    ``deterministic=True`` makes torch refuse an operation without a deterministic
    implementation instead of silently varying from run to run.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        default_root_dir=str(out_dir),
        logger=CSVLogger(str(out_dir), name=name, version=""),
        callbacks=[
            ModelCheckpoint(
                dirpath=str(out_dir / name / "checkpoints"), save_last=True, save_top_k=0
            )
        ],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=5,
    )


def set_torch_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads in torch (``None``: keep the current number); returns it.

    Results depend on the thread count (sums run in another order), so experiments set it
    explicitly and record it next to their numbers.
    """
    import torch

    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {threads}")
        torch.set_num_threads(int(threads))
    return int(torch.get_num_threads())


def write_run_config(path: Path, module: Any, datamodule: Any, max_epochs: int) -> Path:
    """The run as a LightningCLI config (``sap fit --config PATH`` repeats it)."""
    import yaml

    config = {
        "seed_everything": None,
        "trainer": {"max_epochs": max_epochs, "accelerator": "cpu"},
        "model": {
            "class_path": f"{type(module).__module__}.{type(module).__name__}",
            "init_args": dict(module.hparams),
        },
        "data": {
            "class_path": f"{type(datamodule).__module__}.{type(datamodule).__name__}",
            "init_args": dict(getattr(datamodule, "hparams", {})),
        },
    }
    return write_text_atomic(
        path, yaml.safe_dump(json.loads(json.dumps(config, default=list)), sort_keys=False)
    )


__all__ = ["cpu_trainer", "set_torch_threads", "write_run_config"]
