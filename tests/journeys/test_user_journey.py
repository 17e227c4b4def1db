"""The whole path a user takes, through the command line, from an empty folder.

``sap phantom`` (two cohorts) -> ``sap fit`` skeleton -> ``sap fit`` lesion from that
checkpoint -> SIGTERM mid-run -> the init checkpoint deleted -> ``sap fit --ckpt_path last``
-> ``sap zoo export`` -> ``sap zoo push`` to a local Hub -> ``load_pretrained("hf://...")`` and
``sap predict --lesion-model hf://...`` -> ``sap evaluate``. Every step is a subprocess, as in
a shell, and is checked on the files it left and the numbers in them.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.hub_server import HubServer
from tests.helpers.training import (
    exit_status,
    fit_args,
    last_checkpoints,
    load,
    logged_rows,
    run_sap,
    sap_process,
    wait_until,
)

GRID = ["--shape", "32", "20", "64", "--spacing-mm", "15", "15", "18"]
SLOW = "--trainer.callbacks+=tests.helpers.training.SlowBatches"
REPO = "journey/lesion-model"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A local Hub; this process and its subprocesses talk to it, with their own cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(variable, raising=False)
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("HF_TOKEN", "hf_sap_journey_dummy_token")
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        yield server


def _ok(result, step: str) -> str:
    assert result.returncode == 0, (
        f"{step} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_phantom_to_evaluation_through_the_cli(tmp_path: Path, hub: HubServer) -> None:
    started = time.monotonic()
    # 1. cohorts in the documented layout
    for name, kind, seed in (("anatomy", "--healthy", "3"), ("lesions", "--metastatic", "4"),
                             ("heldout", "--metastatic", "5")):  # fmt: skip
        other = "--metastatic" if kind == "--healthy" else "--healthy"
        count = "2" if name == "heldout" else "3"
        _ok(run_sap(["phantom", name, kind, count, other, "0", "--seed", seed, *GRID,
                     "--quiet"], cwd=tmp_path), f"sap phantom {name}")  # fmt: skip
    heldout_cases = sorted(p.name for p in (tmp_path / "heldout").iterdir() if p.is_dir())
    assert heldout_cases == ["metastatic_000", "metastatic_001"]
    assert all((tmp_path / "lesions" / c / "lesion.nii.gz").is_file() for c in heldout_cases)

    # 2. skeleton pretraining, one epoch
    skeleton_dir = tmp_path / "skeleton"
    _ok(run_sap(fit_args("skeleton-cpu-small", tmp_path / "anatomy", skeleton_dir, 1),
                cwd=tmp_path), "sap fit skeleton")  # fmt: skip
    (skeleton_ckpt,) = last_checkpoints(skeleton_dir)
    assert load(skeleton_ckpt)["sap_recipe"]["task"] == "skeleton"

    # 3. lesion fine-tune from it, stopped by SIGTERM in epoch 1
    lesion_dir = tmp_path / "lesion"
    lesion = fit_args("lesion-cpu-small", tmp_path / "lesions", lesion_dir, 3,
                      "--model.init", str(skeleton_ckpt))  # fmt: skip
    log = tmp_path / "lesion.log"
    process = sap_process([*lesion, SLOW], cwd=tmp_path, log=log)
    try:
        wait_until(lambda: "batch 1/1" in log.read_text(encoding="utf-8"), timeout_s=300)
        process.send_signal(signal.SIGTERM)
        status = exit_status(process.wait(timeout=300))
    finally:
        process.kill()
    output = log.read_text(encoding="utf-8")
    (stopped,) = last_checkpoints(lesion_dir)
    assert status == 143, output[-3000:]
    assert f"Training stopped by SIGTERM; last checkpoint: {stopped}" in output
    stopped_at = load(stopped)["global_step"]
    (first_epoch,) = lesion_dir.rglob("epoch=0-step=*.ckpt")
    steps_per_epoch = int(first_epoch.stem.split("step=")[1])
    assert steps_per_epoch < stopped_at < 2 * steps_per_epoch

    # 4. resume without the pretrained file: the restored weights win, the run finishes
    skeleton_ckpt.unlink()
    _ok(run_sap([*lesion, "--ckpt_path", "last"], cwd=tmp_path), "sap fit --ckpt_path last")
    final_ckpt = last_checkpoints(lesion_dir)[-1]
    final = load(final_ckpt)
    assert final["global_step"] == 3 * steps_per_epoch
    assert final["sap_transfer"]["source"] == str(skeleton_ckpt)
    assert final["sap_transfer"]["loaded"] > 0
    validated = [r for r in logged_rows(lesion_dir) if r.get("val/lesion_patient_mean_dice")]
    assert validated, "validation ran and logged the sweep objective"
    assert all(0.0 <= float(r["val/lesion_patient_mean_dice"]) <= 1.0 for r in validated)

    # 5. export, with the fine-tune's source in its provenance
    export = tmp_path / "export"
    _ok(run_sap(["zoo", "export", str(final_ckpt), str(export)], cwd=tmp_path), "sap zoo export")
    config = json.loads((export / "config.json").read_text(encoding="utf-8"))
    assert config["recipe"]["task"] == "lesion"
    # a local checkpoint has no Hub name: the card's base_model stays empty, the provenance
    # names the file and its hash
    assert config["provenance"]["initialised_from"] == final["sap_transfer"]["base_model"]
    assert config["provenance"]["initialised_from"].startswith("last.ckpt sha256:")
    assert config["base_model"] == ""
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in export.iterdir()}

    # 6. push to the Hub, load back by its pinned URI
    pushed = _ok(run_sap(["zoo", "push", str(export), REPO], cwd=tmp_path), "sap zoo push")
    uri = re.search(r"hf://\S+@[0-9a-f]{40}", pushed)
    assert uri, pushed
    from sap import load_pretrained

    model = load_pretrained(uri.group(0))
    assert model.recipe.task == "lesion" and list(model.recipe.channels) == ["T1", "b1000"]
    assert any(path.startswith(f"/{REPO}/resolve/") for _, path in hub.requests)

    # 7. predict the held-out cohort with the model from the Hub
    predictions = tmp_path / "predictions"
    _ok(run_sap(["predict", "heldout", str(predictions), "--lesion-model", uri.group(0),
                 "--no-progress"], cwd=tmp_path), "sap predict")  # fmt: skip
    rows = _csv(predictions / "summary.csv")
    assert [r["case_id"] for r in rows] == heldout_cases
    assert {r["status"] for r in rows} == {"ok"}
    assert {"lesion_count", "total_volume_ml"} <= set(rows[0])
    for case in heldout_cases:
        assert (predictions / case / "lesion.nii.gz").is_file()
        assert (predictions / case / "lesions.csv").is_file()

    # 8. evaluate against the phantom's reference
    evaluation = tmp_path / "evaluation"
    _ok(run_sap(["evaluate", "--pred", str(predictions), "--ref", "heldout", "--out",
                 str(evaluation), "--no-progress"], cwd=tmp_path), "sap evaluate")  # fmt: skip
    summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
    metrics = summary["metrics"]
    assert metrics["sensitivity"]["n"] == 2
    for name in ("sensitivity", "global_dice", "mean_lesion_dice"):
        assert 0.0 <= metrics[name]["pooled"] <= 1.0, name
    assert metrics["fp_per_exam"]["pooled"] >= 0.0
    exams = _csv(evaluation / "per_exam.csv")
    assert sorted(r["case_id"] for r in exams) == heldout_cases
    assert all(int(float(r["n_lesions"])) > 0 for r in exams)
    assert {f"{case}.png" for case in heldout_cases} <= {
        p.name for p in (evaluation / "cases").iterdir()
    }
    assert time.monotonic() - started < 600
