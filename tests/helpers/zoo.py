"""Tiny models, exports and checkpoints for the zoo tests: build, export and compare in milliseconds."""

from __future__ import annotations

from pathlib import Path

import torch

from sap.recipe import ModelRecipe
from sap.zoo import ModelConfig, TrainingData, save_pretrained

#: Smallest useful network: builds and runs in milliseconds on one core.
TINY_KWARGS = {"base_channels": 4, "depth": 2, "residual": True}
TINY_INPUT_SHAPE = (1, 2, 8, 8, 8)


def random_tiny_unet(out_channels: int = 10, in_channels: int = 2, seed: int = 0):
    """A bare ``tiny_unet`` (no recipe attached) with seeded random weights, in eval mode."""
    from sap.backbones import build_backbone

    torch.manual_seed(seed)
    return build_backbone("tiny_unet", in_channels, out_channels, **TINY_KWARGS).eval()


def tiny_config(model, name: str = "tiny-test", task: str = "skeleton") -> ModelConfig:
    return ModelConfig(
        recipe=ModelRecipe(
            backbone=model.name,
            backbone_kwargs=dict(model.kwargs),
            labels=ModelRecipe.default_labels(task),  # type: ignore[arg-type]
            task=task,  # type: ignore[arg-type]
            patch_size=(8, 8, 8),
        ),
        name=name,
        description="A tiny test model.",
        training_data=TrainingData("random weights", synthetic=True, num_cases=0),
        metrics={"whole_skeleton_dice": 0.5},
        metrics_description="made up for a test",
    )


def tiny_export(folder: Path, seed: int = 0, name: str = "tiny-test", task: str = "skeleton"):
    """Export a tiny random model to ``folder``; return ``(model, folder)``."""
    model = random_tiny_unet(out_channels=10 if task == "skeleton" else 2, seed=seed)
    save_pretrained(model, folder, tiny_config(model, name=name, task=task))
    return model, folder


def catalogue_entry(**changes) -> dict:
    """The fields of a valid ``model_zoo/<name>.yaml`` entry (a Hub model), with ``changes``."""
    entry = {
        "name": "sap-test-model",
        "summary": "an entry for tests",
        "task": "skeleton",
        "backbone": "tiny_unet",
        "channels": ["T1", "b1000"],
        "labels": ["background", "bone"],
        "source": {"hub": "sap-org/sap-test-model", "revision": "1" * 40},
        "sha256": "0" * 64,
    }
    entry.update(changes)
    return entry


def write_catalogue_entry(folder: Path, entry: dict, name: str | None = None) -> Path:
    """Write ``entry`` as ``folder/<name>.yaml`` (default: the entry's own name)."""
    import yaml

    path = folder / f"{name or entry['name']}.yaml"
    path.write_text(yaml.safe_dump(entry), encoding="utf-8")
    return path


def same_output(a: torch.nn.Module, b: torch.nn.Module, shape=TINY_INPUT_SHAPE) -> bool:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return bool(torch.equal(a.eval()(x), b.eval()(x)))


def train_one_step_checkpoint(folder: Path) -> Path:
    """A real Lightning checkpoint of AnatomicalPretraining (one optimiser step, 8^3 patches)."""
    import lightning as L

    from sap.tasks import AnatomicalPretraining

    batch = {
        "image": torch.rand(1, 2, 8, 8, 8),
        "label": torch.randint(0, 10, (1, 8, 8, 8)),
        "case_id": ["c0"],
    }
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    task = AnatomicalPretraining(
        backbone="tiny_unet", backbone_kwargs=TINY_KWARGS, patch_size=(8, 8, 8), warmup_epochs=0
    )
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=folder,
        accelerator="cpu",
    )
    trainer.fit(task, loader)
    path = folder / "skeleton.ckpt"
    trainer.save_checkpoint(path)
    return path
