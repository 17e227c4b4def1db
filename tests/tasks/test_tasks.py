"""Behaviour of the Lightning tasks: loss goes down, SAP transfer is exact and loud, recipes travel."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from sap.backbones import build_backbone
from sap.errors import ConfigError
from sap.labels import LESION_LABELS, SKELETON_LABELS
from sap.tasks import (
    AnatomicalPretraining,
    LesionFinetuning,
    TransferError,
    load_task_checkpoint,
    transfer_encoder_decoder,
)
from sap.tasks.schedule import warmup_cosine_factor
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
    report = lesion.initialise()

    source = skeleton.model.state_dict()
    target = lesion.model.state_dict()
    transferred = [k for k in target if lesion.model.group_of(k) in ("encoder", "decoder")]
    assert transferred and sorted(transferred) == report.loaded
    for key in transferred:
        assert torch.equal(target[key], source[key]), key
    for key, value in fresh_head.items():
        assert torch.equal(target[key], value), "the lesion head must stay freshly initialised"
    assert lesion.model.out_channels == 2
    assert report.skipped and not report.missing and not report.unexpected
    assert all(lesion.model.group_of(key) == "head" for key in report.skipped)
    assert lesion.transfer_record["base_model"].startswith("skeleton.ckpt sha256:")


def test_sap_init_happens_when_fit_starts(tmp_path: Path) -> None:
    ckpt, skeleton = _trained_skeleton_checkpoint(tmp_path)
    lesion = LesionFinetuning(
        init=str(ckpt), backbone="tiny_unet", patch_size=PATCH, lr_encoder=1e-12, lr_decoder=1e-12
    )
    assert lesion.transfer_report is None, "building the module reads no weights"
    _fit(lesion, _loader(2, n=4), 1, tmp_path / "run")
    assert lesion.transfer_report is not None
    encoder_key = next(
        k for k in lesion.model.state_dict() if lesion.model.group_of(k) == "encoder"
    )
    assert torch.allclose(
        lesion.model.state_dict()[encoder_key],
        skeleton.model.state_dict()[encoder_key],
        atol=1e-9,
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
        init=str(ckpt),
        backbone="tiny_unet",
        backbone_kwargs={"base_channels": 16},
        patch_size=PATCH,
    )
    with pytest.raises(TransferError, match="shape"):
        wider.initialise()
    other = LesionFinetuning(init=str(ckpt), backbone="unet_resnet18", patch_size=(32, 32, 32))
    with pytest.raises(ConfigError, match="--model.backbone tiny_unet"):
        other.initialise()


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


class PointwiseClassifier(torch.nn.Module):
    """Predicts class ``round(10 * T1)`` at each voxel: its whole-volume output is known exactly."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.classes = torch.arange(num_classes, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -20.0 * (10.0 * x[:, :1] - self.classes).abs()


def _validate(module, image: torch.Tensor, label: torch.Tensor, tmp_path: Path) -> dict:
    batch = {"image": image[None], "label": label[None], "affine": torch.eye(4)[None]}
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path)
    )
    return trainer.validate(module, dataloaders=DataLoader([batch], batch_size=None))[0]


def _dice(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    both = int((prediction & reference).sum())
    return 2 * both / (int(prediction.sum()) + int(reference.sum()))


def test_validation_logs_dice_of_each_class_and_the_foreground_over_whole_volumes(
    tmp_path: Path,
) -> None:
    module = AnatomicalPretraining(
        backbone="tiny_unet", labels=["background", "a", "b", "c"], patch_size=PATCH
    )
    module.model = PointwiseClassifier(4)
    shape = (24, 20, 40)  # not a multiple of the patch: windows overlap and hang over borders
    prediction = torch.zeros(shape, dtype=torch.long)
    prediction[2:12, 3:15, 5:30] = 1
    prediction[14:22, 2:10, 20:38] = 2
    label = torch.zeros(shape, dtype=torch.long)
    label[4:12, 3:15, 5:25] = 1
    label[14:22, 5:12, 20:38] = 2
    image = torch.stack([prediction / 10.0, torch.zeros(shape)])

    logged = _validate(module, image, label, tmp_path)

    assert logged["val/dice_a"] == pytest.approx(_dice(prediction == 1, label == 1), abs=1e-6)
    assert logged["val/dice_b"] == pytest.approx(_dice(prediction == 2, label == 2), abs=1e-6)
    assert "val/dice_c" not in logged, "a class absent from both maps has no Dice"
    assert logged["val/dice_foreground"] == pytest.approx(
        _dice(prediction > 0, label > 0), abs=1e-6
    )
    assert "val/loss" not in logged


def test_lesion_validation_logs_detection_metrics(tmp_path: Path) -> None:
    module = LesionFinetuning(backbone="tiny_unet", patch_size=PATCH)
    module.model = PointwiseClassifier(2)
    shape = (24, 20, 40)
    predicted = torch.zeros(shape, dtype=torch.long)
    predicted[2:8, 2:8, 2:8] = 1  # overlaps the first lesion
    predicted[15:20, 12:18, 30:36] = 1  # a false positive
    label = torch.zeros(shape, dtype=torch.long)
    label[4:10, 4:10, 4:10] = 1
    label[14:20, 2:6, 14:20] = 1  # missed
    image = torch.stack([predicted / 10.0, torch.zeros(shape)])

    logged = _validate(module, image, label, tmp_path)

    assert logged["val/lesion_sensitivity"] == pytest.approx(0.5)
    assert logged["val/lesion_precision"] == pytest.approx(0.5)
    assert logged["val/lesion_fp_per_exam"] == pytest.approx(1.0)
    assert logged["val/dice_lesion"] == pytest.approx(_dice(predicted == 1, label == 1), abs=1e-6)


@pytest.mark.parametrize(("task", "kept"), [("skeleton", 0), ("lesion", 1)])
def test_whole_volume_prediction_keeps_labels_and_only_the_probabilities_it_needs(
    task: str, kept: int
) -> None:
    module = (
        _skeleton()
        if task == "skeleton"
        else LesionFinetuning(backbone="tiny_unet", patch_size=PATCH)
    )
    result = module.predict_volume(torch.rand(2, 20, 18, 36))
    assert result.labels.dtype == np.uint8 and result.labels.shape == (20, 18, 36)
    assert result.probabilities.dtype == np.float16
    assert result.probabilities.shape == (kept, 20, 18, 36)


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


def test_init_takes_a_zoo_name_and_records_it_as_the_base_model() -> None:
    from sap.zoo import load_pretrained

    lesion = LesionFinetuning(init="sap-skeleton-phantom", backbone="tiny_unet", patch_size=PATCH)
    report = lesion.initialise()
    pretrained = load_pretrained("sap-skeleton-phantom").state_dict()
    assert report is not None and report.loaded
    for key in report.loaded:
        assert torch.equal(lesion.model.state_dict()[key], pretrained[key])
    assert lesion.transfer_record["base_model"] == "sap-skeleton-phantom"
    assert lesion.transfer_record["transfer"] == "encoder+decoder"


def test_encoder_only_transfer_leaves_decoder_and_head_fresh() -> None:
    torch.manual_seed(5)
    lesion = LesionFinetuning(
        init="sap-skeleton-phantom", transfer="encoder", backbone="tiny_unet", patch_size=PATCH
    )
    fresh = {k: v.clone() for k, v in lesion.model.state_dict().items()}
    report = lesion.initialise()
    groups = {key: lesion.model.group_of(key) for key in fresh}
    assert report is not None and report.loaded
    assert {groups[key] for key in report.loaded} == {"encoder"}
    for key, value in lesion.model.state_dict().items():
        if groups[key] != "encoder":
            assert torch.equal(value, fresh[key]), f"{key} must keep its fresh initialisation"
    assert {groups[key] for key in report.skipped} == {"decoder", "head"}


@pytest.mark.parametrize("init", [None, "scratch", "none", ""])
def test_scratch_and_none_mean_random_initialisation(init) -> None:
    lesion = LesionFinetuning(init=init, backbone="tiny_unet", patch_size=PATCH)
    assert lesion.init == "scratch" and lesion.initialise() is None


def test_init_is_checked_when_built_unless_weights_come_from_a_checkpoint(tmp_path: Path) -> None:
    from sap.errors import MissingPathError
    from sap.tasks import restoring_weights

    gone = tmp_path / "gone" / "skeleton.ckpt"
    with pytest.raises(MissingPathError, match="does not exist"):
        LesionFinetuning(init=str(gone), backbone="tiny_unet", patch_size=PATCH)
    with restoring_weights():
        module = LesionFinetuning(init=str(gone), backbone="tiny_unet", patch_size=PATCH)
    assert module.init == str(gone), "the recorded source is kept, never read"


def test_resumed_module_keeps_its_weights_and_its_init_record(tmp_path: Path) -> None:
    ckpt, _ = _trained_skeleton_checkpoint(tmp_path)
    lesion = LesionFinetuning(init=str(ckpt), backbone="tiny_unet", patch_size=PATCH)
    trainer = _fit(lesion, _loader(2, n=4), 1, tmp_path / "first")
    saved = tmp_path / "lesion.ckpt"
    trainer.save_checkpoint(saved)
    ckpt.unlink()  # the pretrained file is gone: resuming must not need it
    restored = load_task_checkpoint(saved)
    assert isinstance(restored, LesionFinetuning)
    assert restored.transfer_record["source"] == str(ckpt)
    for key, value in lesion.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[key], value)


def test_rng_states_survive_a_checkpoint_round_trip(tmp_path: Path) -> None:
    import random

    from sap.tasks.callbacks import collect_rng_states, set_rng_states

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    path = tmp_path / "rng.pt"
    torch.save(collect_rng_states(), path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(10), np.random.rand(10), random.random()
    set_rng_states(torch.load(path, weights_only=True))
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], expected[0])
    assert np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]


def test_validation_panel_is_coronal_with_the_patient_right_on_the_left() -> None:
    from sap.tasks.panels import LABEL_COLOURS, validation_panel

    shape = (6, 4, 8)  # RAS: x grows towards the patient's right, z towards the head
    image = np.zeros((2, *shape), np.float32)
    reference = np.zeros(shape, np.uint8)
    reference[-1, :, -1] = 1  # the patient's right, at the top of the volume
    panel = validation_panel(image, reference, np.zeros(shape, np.uint8), min_height=1)
    tile = panel[:, shape[0] : 2 * shape[0]]  # the reference tile
    assert tile.shape[:2] == (shape[2], shape[0])
    painted = np.argwhere((tile != 0).any(axis=-1))
    assert painted.tolist() == [[0, 0]]
    assert tuple(tile[0, 0]) == tuple((0.6 * LABEL_COLOURS[0]).astype(np.uint8))


def test_final_validation_runs_on_the_last_epoch(tmp_path: Path) -> None:
    from sap.tasks.callbacks import FinalValidation

    class Counting(L.Callback):
        epochs: list[int] = []

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                self.epochs.append(trainer.current_epoch)

    module = _skeleton()
    counting = Counting()
    trainer = L.Trainer(
        max_epochs=3,
        check_val_every_n_epoch=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=str(tmp_path),
        callbacks=[FinalValidation(), counting],
    )
    volume = {
        "image": torch.rand(1, 2, *PATCH),
        "label": torch.zeros(1, *PATCH, dtype=torch.long),
        "affine": torch.eye(4)[None],
    }
    trainer.fit(
        module,
        train_dataloaders=_loader(len(SKELETON_LABELS), n=4),
        val_dataloaders=DataLoader([volume], batch_size=None),
    )
    assert counting.epochs == [1, 2], "every 2nd epoch, and the last one"
    assert trainer.check_val_every_n_epoch == 2
