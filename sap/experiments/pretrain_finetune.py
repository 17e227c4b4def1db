"""The SAP experiment: pretrain, then fine-tune lesion models from each initialisation.

Every lesion arm gets exactly the same data, epochs, seeds and decoder/head learning rate;
the arms differ only in initialisation (the skeleton model's encoder and decoder for SAP,
an SSL model's encoder for SSL, random weights for scratch) and encoder learning rate. The
demo runs SAP and scratch; the benchmark (:mod:`sap.experiments.benchmark`) all three; the
script that makes the bundled zoo models runs the SAP arm only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sap.experiments.trainer import cpu_trainer, write_run_config

#: Lesion arms of :func:`pretrain_then_finetune`: name -> whether it starts from the skeleton model.
ARMS: dict[str, bool] = {"sap": True, "scratch": False}


@dataclass
class PretrainFinetuneSettings:
    """Model, budgets and learning rates of the experiment; sized for a CPU.

    Args:
        seed: seed of the skeleton run and of every data module; the lesion runs are seeded
            with ``seed + lesion_seed_offset``.
        backbone, backbone_kwargs: the network (``sap.backbones``).
        patch_size: training and sliding-window patch in voxels.
        batch_size: patches per training step.
        skeleton_epochs, skeleton_samples_per_volume, skeleton_lr: skeleton pretraining.
        skeleton_ce_background_weight: cross-entropy weight of background in pretraining.
        lesion_epochs: epochs of each lesion arm.
        lesion_lr_decoder: decoder and head learning rate of both arms (and the scratch
            arm's encoder rate).
        lesion_lr_encoder_sap: encoder learning rate of the SAP arm.
        lesion_ce_background_weight: cross-entropy weight of background in fine-tuning
            (see :class:`sap.tasks.SegmentationTask`; paper: 1).
        negative_ratio: lesion-free patches per lesion patch.
        batch_dice: Dice term over the whole batch (see :class:`sap.tasks.SegmentationTask`).
        sw_overlap, sw_batch_size: sliding window of whole-volume prediction.
        lesion_seed_offset: added to ``seed`` for the lesion runs.
        ssl_epochs, ssl_samples_per_volume, ssl_lr: self-supervised pretraining
            (:class:`sap.tasks.SelfSupervisedPretraining`) on the same healthy scans.
        ssl_task_kwargs: further arguments of the SSL task (loss weights, masks, ...).
        torch_threads: CPU threads torch uses (``None``: torch's default). Results depend
            on it (floating-point sums in another order), so it is recorded with every run.
        accelerator, precision: Lightning's, for every run (``"gpu"``, ``"16-mixed"`` on a GPU).
    """

    seed: int = 7
    backbone: str = "tiny_unet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    patch_size: tuple[int, int, int] = (32, 32, 32)
    batch_size: int = 4
    skeleton_epochs: int = 12
    skeleton_samples_per_volume: int = 6
    skeleton_lr: float = 3e-3
    skeleton_ce_background_weight: float = 0.05
    lesion_epochs: int = 28
    lesion_lr_decoder: float = 3e-3
    lesion_lr_encoder_sap: float = 1e-3
    lesion_ce_background_weight: float = 1.0
    negative_ratio: float = 1.0
    batch_dice: bool = True
    sw_overlap: float = 0.25
    sw_batch_size: int = 16
    lesion_seed_offset: int = 100
    ssl_epochs: int = 12
    ssl_samples_per_volume: int = 6
    ssl_lr: float = 3e-3
    ssl_task_kwargs: dict[str, Any] = field(default_factory=dict)
    torch_threads: int | None = None
    accelerator: str = "cpu"
    precision: str = "32-true"


@dataclass
class TrainedRun:
    """One fitted task: the module, its last checkpoint, how long it took and how far it went."""

    module: Any
    checkpoint: Path
    seconds: float
    epochs: int = 0
    steps: int = 0

    def compute(self) -> dict[str, float | int]:
        """``{"seconds", "epochs", "steps"}``: the compute this run spent."""
        return {"seconds": round(self.seconds, 1), "epochs": self.epochs, "steps": self.steps}


@dataclass
class PretrainFinetuneRuns:
    """The skeleton run and the lesion runs by arm (``"sap"``, ``"scratch"``)."""

    skeleton: TrainedRun
    lesion: dict[str, TrainedRun]

    def timings_s(self) -> dict[str, float]:
        """``skeleton_s`` and ``lesion_<arm>_s``."""
        timings = {"skeleton_s": self.skeleton.seconds}
        timings.update({f"lesion_{arm}_s": run.seconds for arm, run in self.lesion.items()})
        return timings


def pretrain_then_finetune(
    anatomy_dir: Path,
    lesions_dir: Path,
    out_dir: Path,
    settings: PretrainFinetuneSettings,
    *,
    arms: Sequence[str] = tuple(ARMS),
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
) -> PretrainFinetuneRuns:
    """Pretrain on ``anatomy_dir``, then fine-tune each arm on ``lesions_dir``.

    Args:
        anatomy_dir: cases with skeleton labels (healthy volunteers).
        lesions_dir: cases with lesion labels (patients).
        out_dir: runs go to ``out_dir/skeleton`` and ``out_dir/lesion_<arm>`` (checkpoints,
            CSV logs, ``config.yaml``).
        settings: see :class:`PretrainFinetuneSettings`.
        arms: lesion arms to run, from :data:`ARMS`.
        progress: show Lightning's progress bars.
        on_stage: called with the run's name (``"skeleton"``, ``"lesion_<arm>"``) just before
            it is fitted.
    """
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"Unknown arm(s) {unknown}; choose from {list(ARMS)}.")
    skeleton = pretrain_skeleton(
        anatomy_dir, out_dir, settings, progress=progress, on_stage=on_stage
    )
    lesion = {}
    for arm in arms:
        lesion[arm] = finetune_lesion(
            lesions_dir,
            out_dir,
            settings,
            init=skeleton.checkpoint if ARMS[arm] else None,
            name=f"lesion_{arm}",
            progress=progress,
            on_stage=on_stage,
        )
    return PretrainFinetuneRuns(skeleton=skeleton, lesion=lesion)


def pretrain_skeleton(
    data_dir: Path,
    out_dir: Path,
    settings: PretrainFinetuneSettings,
    *,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
) -> TrainedRun:
    """Supervised anatomical pretraining on ``data_dir``, written to ``out_dir/skeleton``."""
    import lightning as L

    from sap.data.datamodules import SkeletonDataModule
    from sap.tasks import AnatomicalPretraining

    start = time.perf_counter()
    L.seed_everything(settings.seed, workers=True)
    data = SkeletonDataModule(
        samples_per_volume=settings.skeleton_samples_per_volume,
        **_data_kwargs(settings, data_dir),
    )
    module = AnatomicalPretraining(
        lr=settings.skeleton_lr,
        ce_background_weight=settings.skeleton_ce_background_weight,
        **_task_kwargs(settings),
    )
    run = _Run(out_dir, "skeleton", settings.skeleton_epochs, progress, on_stage)
    return run.fit(module, data, start, settings)


def pretrain_ssl(
    data_dir: Path,
    out_dir: Path,
    settings: PretrainFinetuneSettings,
    *,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
) -> TrainedRun:
    """Self-supervised pretraining on the unlabelled scans of ``data_dir``, to ``out_dir/ssl``."""
    import lightning as L

    from sap.data.unlabelled import UnlabelledDataModule
    from sap.tasks import SelfSupervisedPretraining

    start = time.perf_counter()
    L.seed_everything(settings.seed, workers=True)
    data = UnlabelledDataModule(
        samples_per_volume=settings.ssl_samples_per_volume,
        **_data_kwargs(settings, data_dir),
    )
    module = SelfSupervisedPretraining(
        backbone=settings.backbone,
        backbone_kwargs=settings.backbone_kwargs,
        patch_size=list(settings.patch_size),
        lr=settings.ssl_lr,
        warmup_epochs=1,
        **settings.ssl_task_kwargs,
    )
    run = _Run(out_dir, "ssl", settings.ssl_epochs, progress, on_stage)
    return run.fit(module, data, start, settings)


def finetune_lesion(
    data_dir: Path,
    out_dir: Path,
    settings: PretrainFinetuneSettings,
    *,
    init: Path | None,
    name: str,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
    transfer: str = "encoder+decoder",
    lr_encoder: float | None = None,
) -> TrainedRun:
    """Lesion fine-tuning on ``data_dir`` from the model ``init``, or from scratch (``None``).

    Args:
        transfer: groups loaded from ``init`` (``"encoder"`` for an SSL model).
        lr_encoder: encoder learning rate; default ``settings.lesion_lr_encoder_sap`` from a
            pretrained model, ``settings.lesion_lr_decoder`` from scratch.
    """
    import lightning as L

    from sap.data.datamodules import LesionDataModule
    from sap.tasks import LesionFinetuning

    start = time.perf_counter()
    L.seed_everything(settings.seed + settings.lesion_seed_offset, workers=True)
    data = LesionDataModule(
        negative_ratio=settings.negative_ratio, **_data_kwargs(settings, data_dir)
    )
    if lr_encoder is None:
        lr_encoder = settings.lesion_lr_decoder if init is None else settings.lesion_lr_encoder_sap
    module = LesionFinetuning(
        init="scratch" if init is None else str(init),
        lr_encoder=lr_encoder,
        lr_decoder=settings.lesion_lr_decoder,
        lr_head=settings.lesion_lr_decoder,
        ce_background_weight=settings.lesion_ce_background_weight,
        transfer=transfer,
        **_task_kwargs(settings),
    )
    run = _Run(out_dir, name, settings.lesion_epochs, progress, on_stage)
    return run.fit(module, data, start, settings)


def _data_kwargs(settings: PretrainFinetuneSettings, data_dir: Path) -> dict[str, Any]:
    """Data module arguments both stages share: all cases train, none validate."""
    return {
        "data_dir": str(data_dir),
        "patch_size": list(settings.patch_size),
        "batch_size": settings.batch_size,
        "val_fraction": 0.0,
        "seed": settings.seed,
        "cache_subjects": True,
    }


def _task_kwargs(settings: PretrainFinetuneSettings) -> dict[str, Any]:
    """Task arguments both stages share: the network, one warm-up epoch, the sliding window."""
    return {
        "backbone": settings.backbone,
        "backbone_kwargs": settings.backbone_kwargs,
        "patch_size": list(settings.patch_size),
        "warmup_epochs": 1,
        "sw_overlap": settings.sw_overlap,
        "sw_batch_size": settings.sw_batch_size,
        "batch_dice": settings.batch_dice,
    }


@dataclass
class _Run:
    """Where and how long one task is fitted, and who hears that it starts."""

    out_dir: Path
    name: str
    epochs: int
    progress: bool
    on_stage: Callable[[str], None] | None

    def fit(
        self, module: Any, data: Any, start: float, settings: PretrainFinetuneSettings
    ) -> TrainedRun:
        if self.on_stage is not None:
            self.on_stage(self.name)
        trainer = cpu_trainer(
            self.out_dir,
            self.epochs,
            self.name,
            self.progress,
            accelerator=settings.accelerator,
            precision=settings.precision,
        )
        trainer.fit(module, datamodule=data)
        folder = self.out_dir / self.name
        write_run_config(folder / "config.yaml", module, data, self.epochs)
        return TrainedRun(
            module=module,
            checkpoint=folder / "checkpoints" / "last.ckpt",
            seconds=time.perf_counter() - start,
            epochs=int(trainer.current_epoch),
            steps=int(trainer.global_step),
        )


__all__ = [
    "ARMS",
    "PretrainFinetuneRuns",
    "PretrainFinetuneSettings",
    "TrainedRun",
    "finetune_lesion",
    "pretrain_skeleton",
    "pretrain_ssl",
    "pretrain_then_finetune",
]
