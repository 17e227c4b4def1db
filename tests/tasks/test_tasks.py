"""Behaviour of the Lightning tasks: loss goes down, SAP transfer is exact and loud, recipes travel."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from sap.backbones import build_backbone
from sap.labels import LESION_LABELS, SKELETON_LABELS
from sap.metrics.skeleton import skeleton_dice
from sap.tasks import (
    AnatomicalPretraining,
    LesionFinetuning,
    TransferError,
    load_task_checkpoint,
    transfer_encoder_decoder,
)
from sap.tasks.base import warmup_cosine_factor
from sap.zoo import read_state_dict

PATCH = (16, 16, 16)


class BlobDataset(Dataset):
    """Two-channel patches with a bright cube labelled ``label_value``: learnable in a few steps."""

    def __init__(self, n: int, num_classes: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            image = torch.rand(2, *PATCH, generator=generator) * 0.2
            label = torch.zeros(PATCH, dtype=torch.long)
            start = torch.randint(0, 8, (3,), generator=generator)
            value = int(torch.randint(1, num_classes, (1,), generator=generator))
            sl = tuple(slice(int(s), int(s) + 6) for s in start)
            image[0][sl] += 0.3 * value
            image[1][sl] += 0.6
            label[sl] = value
            self.items.append(
                {"image": image, "label": label, "case_id": f"case_{len(self.items)}"}
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _loader(num_classes: int, n: int = 8) -> DataLoader:
    return DataLoader(BlobDataset(n, num_classes), batch_size=4, shuffle=False)


def _fixed_batch_loss(module, loader) -> float:
    module.eval()
    with torch.no_grad():
        losses = [float(module.compute_loss(module(b["image"]), b["label"])) for b in loader]
    module.train()
    return sum(losses) / len(losses)


def _fit(module, loader, epochs: int, tmp_path: Path) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def _skeleton(**kwargs) -> AnatomicalPretraining:
    return AnatomicalPretraining(
        backbone="tiny_unet", patch_size=PATCH, lr=1e-2, warmup_epochs=0, **kwargs
    )


def test_warmup_then_cosine_schedule() -> None:
    factors = [warmup_cosine_factor(step, 4, 20) for step in range(21)]
    assert factors[:4] == sorted(factors[:4]) and factors[3] < 1.0
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[20] == pytest.approx(0.0, abs=1e-12)


def test_per_class_dice_marks_absent_classes_nan() -> None:
    """Validation logs per-class Dice with sap.metrics; an absent class is NaN, not 0 or 1."""
    label = torch.tensor([0, 1, 1, 2]).reshape(1, 1, 4)
    prediction = torch.tensor([0, 1, 2, 2]).reshape(1, 1, 4)
    scores = skeleton_dice(prediction, label, ["background", "a", "b", "c"])
    assert scores["a"] == pytest.approx(2 / 3)
    assert scores["b"] == pytest.approx(2 / 3)
    assert math.isnan(scores["c"])


@pytest.mark.parametrize("task", ["skeleton", "lesion"])
def test_two_epoch_fit_lowers_the_loss(task: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    if task == "skeleton":
        module = _skeleton()
        loader = _loader(len(SKELETON_LABELS))
    else:
        module = LesionFinetuning(
            backbone="tiny_unet",
            patch_size=PATCH,
            lr_encoder=1e-2,
            lr_decoder=1e-2,
            lr_head=1e-2,
            warmup_epochs=0,
        )
        loader = _loader(len(LESION_LABELS))
    before = _fixed_batch_loss(module, loader)
    _fit(module, loader, 2, tmp_path)
    after = _fixed_batch_loss(module, loader)
    assert after < 0.9 * before, (before, after)


def test_lesion_model_gets_three_learning_rates(tmp_path: Path) -> None:
    module = LesionFinetuning(
        backbone="tiny_unet", patch_size=PATCH, lr_encoder=2e-6, lr_decoder=1e-5, lr_head=3e-5
    )
    trainer = _fit(module, _loader(2, n=4), 1, tmp_path)
    optimizer = trainer.optimizers[0]
    rates = {group["name"]: group["initial_lr"] for group in optimizer.param_groups}
    assert rates == {"encoder": 2e-6, "decoder": 1e-5, "head": 3e-5}
    groups = module.model.parameter_groups()
    for group in optimizer.param_groups:
        assert {id(p) for p in group["params"]} == {id(p) for p in groups[group["name"]]}


def _trained_skeleton_checkpoint(tmp_path: Path) -> tuple[Path, AnatomicalPretraining]:
    torch.manual_seed(1)
    skeleton = _skeleton()
    trainer = _fit(skeleton, _loader(len(SKELETON_LABELS), n=4), 1, tmp_path)
    path = tmp_path / "skeleton.ckpt"
    trainer.save_checkpoint(path)
    return path, skeleton


def test_sap_init_loads_encoder_and_decoder_bit_for_bit_and_a_fresh_head(tmp_path: Path) -> None:
    ckpt, skeleton = _trained_skeleton_checkpoint(tmp_path)
    torch.manual_seed(123)
    lesion = LesionFinetuning(init=str(ckpt), backbone="tiny_unet", patch_size=PATCH)
    fresh_head = {
        k: v.clone()
        for k, v in lesion.model.state_dict().items()
        if lesion.model.group_of(k) == "head"
    }
    report = lesion.initialise_from(ckpt)

    source = skeleton.model.state_dict()
    target = lesion.model.state_dict()
    transferred = [k for k in target if lesion.model.group_of(k) in ("encoder", "decoder")]
    assert transferred and sorted(transferred) == report.loaded
    for key in transferred:
        assert torch.equal(target[key], source[key]), key
    for key, value in fresh_head.items():
        assert torch.equal(target[key], value), "the lesion head must stay freshly initialised"
    assert lesion.model.out_channels == 2
    assert report.skipped_head and not report.missing and not report.unexpected


def test_sap_init_happens_when_fit_starts(tmp_path: Path) -> None:
    ckpt, skeleton = _trained_skeleton_checkpoint(tmp_path)
    lesion = LesionFinetuning(
        init=str(ckpt), backbone="tiny_unet", patch_size=PATCH, lr_encoder=0.0, lr_decoder=0.0
    )
    _fit(lesion, _loader(2, n=4), 1, tmp_path / "run")
    assert lesion.transfer_report is not None
    encoder_key = next(
        k for k in lesion.model.state_dict() if lesion.model.group_of(k) == "encoder"
    )
    assert torch.equal(
        lesion.model.state_dict()[encoder_key], skeleton.model.state_dict()[encoder_key]
    )


def test_transfer_fails_loudly_when_encoder_is_missing(tmp_path: Path) -> None:
    ckpt, _ = _trained_skeleton_checkpoint(tmp_path)
    state = read_state_dict(ckpt)
    lesion = LesionFinetuning(backbone="tiny_unet", patch_size=PATCH)
    encoder_keys = [
        k for k in state if lesion.model.group_of(k.removeprefix("model.")) == "encoder"
    ]
    broken = {k: v for k, v in state.items() if k != encoder_keys[0]}
    with pytest.raises(TransferError, match="missing") as error:
        transfer_encoder_decoder(lesion.model, broken, source="broken.ckpt")
    assert encoder_keys[0].removeprefix("model.") in str(error.value)


def test_transfer_rejects_a_different_architecture(tmp_path: Path) -> None:
    ckpt, _ = _trained_skeleton_checkpoint(tmp_path)
    wider = LesionFinetuning(
        backbone="tiny_unet", backbone_kwargs={"base_channels": 16}, patch_size=PATCH
    )
    with pytest.raises(TransferError, match="shape"):
        wider.initialise_from(ckpt)


def test_transfer_understands_reference_checkpoint_prefixes(tmp_path: Path) -> None:
    """The reference scripts save DDP-wrapped models: keys start with ``module.``."""
    source = build_backbone("tiny_unet", in_channels=2, out_channels=10)
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "reference.pth"
    torch.save({"state_dict": wrapped}, path)
    target = build_backbone("tiny_unet", in_channels=2, out_channels=2)
    report = transfer_encoder_decoder(target, read_state_dict(path), source=str(path))
    assert report.loaded and not report.missing
    for key in report.loaded:
        assert torch.equal(target.state_dict()[key], source.state_dict()[key])


def test_checkpoint_rebuilds_the_module_with_its_recipe(tmp_path: Path) -> None:
    ckpt, skeleton = _trained_skeleton_checkpoint(tmp_path)
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["sap_recipe"]["labels"] == list(SKELETON_LABELS)
    assert checkpoint["sap_recipe"]["backbone"] == "tiny_unet"
    restored = load_task_checkpoint(ckpt)
    assert isinstance(restored, AnatomicalPretraining)
    x = torch.rand(1, 2, *PATCH)
    skeleton.eval()
    restored.eval()
    with torch.no_grad():
        assert torch.allclose(restored(x), skeleton(x))


def test_patch_size_must_fit_the_backbone() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AnatomicalPretraining(backbone="tiny_unet", patch_size=(15, 16, 16))


def test_validation_slides_over_whole_volumes_and_logs_dice(tmp_path: Path) -> None:
    module = _skeleton()
    volume = {"image": torch.rand(1, 2, 24, 20, 40), "label": torch.randint(0, 10, (1, 24, 20, 40))}
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path)
    )
    metrics = trainer.validate(module, dataloaders=DataLoader([volume], batch_size=None))[0]
    assert "val/loss" in metrics and "val/dice_foreground" in metrics
    assert 0.0 <= metrics["val/dice_foreground"] <= 1.0


def test_background_weight_reaches_the_cross_entropy_and_rejects_nonsense() -> None:
    module = AnatomicalPretraining(
        backbone="tiny_unet", patch_size=PATCH, ce_background_weight=0.05
    )
    weight = module.loss_fn.cross_entropy.weight
    assert weight is not None and weight[0] == pytest.approx(0.05) and torch.all(weight[1:] == 1)
    assert (
        AnatomicalPretraining(backbone="tiny_unet", patch_size=PATCH).loss_fn.cross_entropy.weight
        is None
    )
    with pytest.raises(ValueError, match="ce_background_weight"):
        AnatomicalPretraining(backbone="tiny_unet", patch_size=PATCH, ce_background_weight=0.0)
