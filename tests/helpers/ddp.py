"""A Lightning callback that records what each DDP rank trained and validated on."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class RecordBatches(L.Callback):
    """Write, per rank and epoch, every training patch's case and whether it holds lesion.

    Files: ``out/train_rank<r>_epoch<e>.json`` (``{"steps": n, "patches": [[case_id,
    lesion_voxels], ...]}``) and, on rank 0 after each validation,
    ``out/val_epoch<e>.json`` (the validation metrics Lightning synchronised).

    Args:
        out: folder the records go to.
    """

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.patches: list[list] = []
        self.steps = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.patches, self.steps = [], 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.steps += 1
        lesion_voxels = (batch["label"] > 0).flatten(1).sum(1).tolist()
        self.patches += [[c, int(n)] for c, n in zip(batch["case_id"], lesion_voxels)]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        name = f"train_rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        record = {"steps": self.steps, "patches": self.patches}
        (self.out / name).write_text(json.dumps(record), encoding="utf-8")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.out.mkdir(parents=True, exist_ok=True)
        name = f"val_epoch{trainer.current_epoch}.json"
        (self.out / name).write_text(json.dumps(metrics), encoding="utf-8")
