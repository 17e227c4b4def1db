"""The SSL baseline: each pretext term learns, only the encoder trains, and it transfers encoder-only."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from sap.data import UnlabelledDataModule
from sap.phantom import generate_cohort
from sap.tasks import LesionFinetuning, SelfSupervisedPretraining, TransferError
from sap.tasks.ssl import LOSS_TERMS
from sap.tasks.ssl_pretext import mask_cutouts, nt_xent, rotate_quarters, rotation_plane
from sap.zoo import read_checkpoint
from tests.helpers.experiments import TINY_PHANTOM

PATCH = (16, 16, 16)


def _ssl(**kwargs) -> SelfSupervisedPretraining:
    settings = {"backbone": "tiny_unet", "patch_size": PATCH, "lr": 3e-3, "warmup_epochs": 0}
    return SelfSupervisedPretraining(**(settings | kwargs))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny healthy phantoms (labels present but unused)."""
    root = tmp_path_factory.mktemp("ssl")
    generate_cohort(root / "healthy", healthy=2, metastatic=0, seed=5, **TINY_PHANTOM)
    return root / "healthy"


def _data(cohort: Path, **kwargs) -> UnlabelledDataModule:
    settings = {"patch_size": PATCH, "batch_size": 4, "samples_per_volume": 4}
    return UnlabelledDataModule(str(cohort), cache_subjects=True, **(settings | kwargs))


@pytest.fixture(scope="module")
def pretrained(cohort: Path):
    """Two epochs of SSL with all three terms through Lightning; the run's folder and module."""
    L.seed_everything(0, workers=True)
    module = _ssl()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        default_root_dir=str(cohort.parent),
        logger=L.pytorch.loggers.CSVLogger(str(cohort.parent), name="run", version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=_data(cohort))
    return cohort.parent / "run", module


def _ssl_checkpoint(run: Path) -> Path:
    return next((run / "checkpoints").glob("*.ckpt"))


@pytest.mark.parametrize("term", LOSS_TERMS)
def test_each_pretext_loss_decreases_on_a_tiny_cohort(cohort: Path, term: str) -> None:
    """40 steps on four patches of the cohort, trained on that one term."""
    torch.manual_seed(0)
    data = _data(cohort)
    data.setup("fit")
    image = next(iter(data.train_dataloader()))["image"]
    weights = {f"{name}_weight": float(name == term) for name in LOSS_TERMS}
    module = _ssl(**weights)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        loss = module.pretext_losses(image)[term]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, losses


def test_lightning_run_logs_every_term_and_lowers_the_total(pretrained) -> None:
    run, _ = pretrained
    with open(run / "metrics.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for term in LOSS_TERMS:
        assert [r for r in rows if r.get(f"train/loss_{term}")], term
    steps = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert len(steps) == 4 and steps[-1] < steps[0], steps


def test_only_the_encoder_and_the_pretext_heads_train(pretrained) -> None:
    _, module = pretrained
    trainable = {name.split(".")[0] for name, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"model", "reconstruction_head", "rotation_head", "projection_head"}
    groups = {
        module.model.group_of(n) for n, p in module.model.named_parameters() if p.requires_grad
    }
    assert groups == {"encoder"}


def test_checkpoint_carries_an_ssl_recipe(pretrained) -> None:
    run, module = pretrained
    checkpoint = read_checkpoint(_ssl_checkpoint(run))
    assert checkpoint.recipe.task == "ssl"
    assert checkpoint.recipe.backbone == "tiny_unet"
    assert list(checkpoint.recipe.patch_size) == list(PATCH)
    raw = torch.load(checkpoint.path, weights_only=True)
    assert raw["sap_trained_groups"] == ["encoder"]


def test_finetuning_from_ssl_loads_the_encoder_only(pretrained) -> None:
    run, ssl = pretrained
    torch.manual_seed(1)
    lesion = LesionFinetuning(
        init=str(_ssl_checkpoint(run)), backbone="tiny_unet", patch_size=PATCH, transfer="encoder"
    )
    before = {k: v.clone() for k, v in lesion.model.state_dict().items()}
    report = lesion.initialise()
    after = lesion.model.state_dict()
    pretrained_state = ssl.model.state_dict()
    for key, value in after.items():
        if lesion.model.group_of(key) == "encoder":
            assert torch.equal(value, pretrained_state[key]), key
        else:
            assert torch.equal(value, before[key]), f"{key} should keep its fresh values"
    assert report.loaded and all(lesion.model.group_of(k) == "encoder" for k in report.loaded)
    assert not any(key.startswith("rotation_head.") for key in report.loaded)


@pytest.mark.parametrize(
    ("backbone_kwargs", "problem"),
    [
        ({"base_channels": 4}, r"(?s)shape mismatch.*encoder\.0\.conv1\.weight"),
        ({"depth": 4}, r"(?s)missing.*encoder\.3\.conv1\.weight"),
    ],
)
def test_ssl_transfer_into_another_architecture_names_every_bad_key(
    pretrained, backbone_kwargs: dict, problem: str
) -> None:
    run, _ = pretrained
    other = LesionFinetuning(
        init=str(_ssl_checkpoint(run)),
        backbone="tiny_unet",
        backbone_kwargs=backbone_kwargs,
        patch_size=PATCH,
        transfer="encoder",
    )
    with pytest.raises(TransferError, match=problem):
        other.initialise()


def test_rotations_and_cutouts_are_what_the_pretext_tasks_undo() -> None:
    x = torch.arange(2 * 1 * 4 * 4 * 2, dtype=torch.float32).reshape(2, 1, 4, 4, 2)
    plane = rotation_plane(2)
    turned = rotate_quarters(x, torch.tensor([1, 2]), plane)
    assert torch.equal(rotate_quarters(turned, torch.tensor([3, 2]), plane), x)
    assert torch.equal(turned[1], torch.rot90(x[1], 2, dims=(1, 2)))
    torch.manual_seed(0)
    masked = mask_cutouts(torch.zeros(1, 1, 8, 8, 8), count=1, size_fraction=0.5)
    assert int((masked != 0).sum()) == 4 * 4 * 4


def test_nt_xent_rewards_matching_views() -> None:
    torch.manual_seed(0)
    a = torch.randn(6, 16)
    matched = nt_xent(a, a + 0.01 * torch.randn(6, 16), temperature=0.5)
    shuffled = nt_xent(a, a.roll(1, 0), temperature=0.5)
    assert matched < 1.0 < 2.5 < shuffled
    assert float(nt_xent(a[:1], a[:1], 0.5)) == 0.0  # one pair: no negatives, nothing to learn


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="swaps two axes of 16 and 32"):
        _ssl(patch_size=(16, 32, 32))
    with pytest.raises(ValueError, match="must be >= 0, and not all 0"):
        _ssl(inpainting_weight=0.0, rotation_weight=0.0, contrastive_weight=0.0)
    with pytest.raises(ValueError, match="rotation_axis must be 0, 1 or 2"):
        _ssl(rotation_axis=3)
