"""``sap fit`` with DDP on 2 CPU processes (gloo): how cases and patches are shared out.

Slow: two processes start, train two epochs of a tiny U-Net on a coarse phantom, validate,
and a third run validates the last checkpoint on one process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sap.cli import main
from sap.data.datamodules import LesionDataModule
from sap.phantom import generate_cohort

SMALL_PHANTOM = {"shape": (48, 32, 96), "spacing_mm": (10.0, 10.0, 12.0)}
PATCH = [16, 16, 32]
VAL_CASES = ["metastatic_004", "metastatic_005"]


def fit_config(tmp_path: Path, records: Path) -> Path:
    """Extra YAML: the packaged callbacks plus the batch recorder."""
    config = {
        "trainer": {
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True, "save_top_k": 0},
                },
                {
                    "class_path": "tests.helpers.ddp.RecordBatches",
                    "init_args": {"out": str(records)},
                },
            ]
        }
    }
    path = tmp_path / "record.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def common_args(data: Path) -> list[str]:
    return [
        "--data.data_dir", str(data),
        "--model.patch_size", json.dumps(PATCH),
        "--data.val_cases", json.dumps(VAL_CASES),
        "--data.batch_size", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip


@pytest.mark.slow
def test_fit_on_two_processes_shares_cases_and_patches_and_validates_like_one(
    tmp_path: Path,
) -> None:
    data = tmp_path / "lesions"
    generate_cohort(data, healthy=0, metastatic=6, seed=4, min_lesion_voxels=2, **SMALL_PHANTOM)
    records, out = tmp_path / "records", tmp_path / "fit"
    command = [
        sys.executable, "-m", "sap.cli", "fit",
        "--config", "lesion-cpu-small",
        "--config", str(fit_config(tmp_path, records)),
        *common_args(data),
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "2",
        "--trainer.check_val_every_n_epoch", "2",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]

    # What each rank should draw, from the same data module on one process.
    module = LesionDataModule(str(data), patch_size=PATCH, val_cases=VAL_CASES, batch_size=2)
    module.setup("fit")
    lesions = module.lesion_counts
    queues = [module.make_train_queue(num_replicas=2, rank=rank) for rank in (0, 1)]
    extra = Counter()
    for queue in queues:
        for index, n in queue.subject_sampler.extra_patches.items():
            extra[module.train_cases[index].case_id] += n

    for epoch in (0, 1):
        ranks = [
            json.loads((records / f"train_rank{r}_epoch{epoch}.json").read_text(encoding="utf-8"))
            for r in (0, 1)
        ]
        cases = [{case for case, _ in rank["patches"]} for rank in ranks]
        assert not cases[0] & cases[1], "each case trains on one rank only"
        assert cases[0] | cases[1] == {c for c, n in lesions.items() if n}, "all cases, once"
        assert ranks[0]["steps"] == ranks[1]["steps"] == math.ceil(len(queues[0]) / 2)
        patches = [p for rank in ranks for p in rank["patches"]]
        positives = Counter(case for case, voxels in patches if voxels)
        negatives = Counter(case for case, voxels in patches if not voxels)
        for case, k in lesions.items():
            assert positives[case] == k, f"{case}: one patch per lesion over both ranks"
            assert negatives[case] == module.sampler.num_negatives(k) + extra[case], case
        assert len(patches) == 2 * len(queues[0]), "every rank draws the same number"

    # The same weights validated on one process give the same metrics.
    (distributed,) = [json.loads(p.read_text()) for p in records.glob("val_epoch*.json")]
    (checkpoint,) = list(out.rglob("last.ckpt"))
    single = tmp_path / "single"
    main([
        "validate", "--config", "lesion-cpu-small", *common_args(data),
        "--trainer.devices", "1",
        "--trainer.logger", json.dumps({
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(single)},
        }),
        "--ckpt_path", str(checkpoint),
    ])  # fmt: skip
    (metrics_file,) = single.rglob("metrics.csv")
    rows = metrics_file.read_text(encoding="utf-8").splitlines()
    names, values = rows[0].split(","), rows[-1].split(",")
    one = {n: float(v) for n, v in zip(names, values) if n.startswith("val/") and v}
    assert "val/dice_foreground" in one and "val/lesion_sensitivity" in one
    assert distributed.keys() >= one.keys()
    for name, value in one.items():
        assert distributed[name] == pytest.approx(value, abs=1e-5), name
