"""Fault catalogue, training: `sap fit|validate|test` fail in one message, and a stopped run resumes.

Every test runs ``sap`` as a user does (``sap.cli.main`` in this process, or a subprocess where
a Trainer starts or a signal is sent) in a fresh temporary folder on tiny phantom cohorts,
and checks the exact outcome: the exit status, the message (which file or option, what is
wrong, the fix), no traceback, no checkpoint written on refused input, and the cohort
unchanged (:func:`tests.helpers.faults.tree_digest` before and after).

| # | input / fault | expected outcome | test |
|---|---|---|---|
| 1 | a text file as `--ckpt_path` | exit 2 "is not a PyTorch checkpoint: it is a text file starting with ..."; no Lightning traceback | test_a_text_file_is_refused_as_a_checkpoint[ckpt_path] |
| 2 | a text file as `--model.init` | exit 2, same message, when the model is built | test_a_text_file_is_refused_as_a_checkpoint[init] |
| 3 | a text file given to `load_pretrained` (`/etc/passwd`-like) | CheckpointError "is not a PyTorch checkpoint: it is a text file" | test_load_pretrained_says_what_a_text_file_is |
| 4 | a text file as `sap predict --lesion-model` | exit 2 naming the file and "text file"; OUT not created | test_predict_names_a_text_file_given_as_model |
| 5 | `--model.init` a zoo name with a typo | exit 2 at construction, close name suggested | test_bad_init_sources_fail_when_the_model_is_built[zoo-typo] |
| 6 | `--model.init` a path that does not exist | exit 2 "does not exist" | test_bad_init_sources_fail_when_the_model_is_built[missing-path] |
| 7 | `--model.init` a folder that is not an export | exit 2 "without config.json" | test_bad_init_sources_fail_when_the_model_is_built[not-an-export] |
| 8 | `--model.init` a malformed `hf://` URI | exit 2 "not a repository id" | test_bad_init_sources_fail_when_the_model_is_built[bad-hub-uri] |
| 9 | `--model.init` an export folder whose weights were modified | exit 2 "sha256"; no checkpoint written | test_init_export_with_modified_weights_is_refused |
| 10 | `--model.init` a [T1, b1000] model, fine-tune `--model.channels [b1000,T1]` | exit 2 "same channels in another order", fix `--model.channels [T1, b1000]`; no checkpoint | test_channel_order_mismatch_is_refused_with_the_fix |
| 11 | `--model.transfer decoder` | exit 2 naming the choices | test_impossible_settings_are_refused_before_any_work[transfer] |
| 12 | `--model.lr_encoder -1` | exit 2 "model.lr_encoder must be > 0, got -1" | test_impossible_settings_are_refused_before_any_work[lr-negative] |
| 13 | `--model.lr_head 0` | exit 2 "model.lr_head must be > 0" | test_impossible_settings_are_refused_before_any_work[lr-zero] |
| 14 | `--model.lr -1` (skeleton) | exit 2 "model.lr must be > 0" | test_impossible_settings_are_refused_before_any_work[skeleton-lr] |
| 15 | `--model.weight_decay -1` | exit 2 "model.weight_decay must be >= 0" | test_impossible_settings_are_refused_before_any_work[weight-decay] |
| 16 | `--model.warmup_epochs -1` | exit 2 "model.warmup_epochs must be >= 0" | test_impossible_settings_are_refused_before_any_work[warmup] |
| 17 | `--model.sw_overlap 1` | exit 2 "model.sw_overlap must be >= 0 and < 1" | test_impossible_settings_are_refused_before_any_work[overlap] |
| 18 | `--model.detection_threshold 1.5` | exit 2 "model.detection_threshold must be > 0 and <= 1" | test_impossible_settings_are_refused_before_any_work[threshold] |
| 19 | `--trainer.max_epochs -1` | exit 2 "needs a finite length", before the data is read | test_impossible_settings_are_refused_before_any_work[epochs-infinite] |
| 20 | `--trainer.max_epochs 0` | exit 2 "trainer.max_epochs is 0" | test_impossible_settings_are_refused_before_any_work[epochs-zero] |
| 21 | `--trainer.max_steps 0` | exit 2 "trainer.max_steps is 0" | test_impossible_settings_are_refused_before_any_work[steps-zero] |
| 22 | `--model.backbone unet_resnet18` with the config's 48-voxel patch | exit 2, one line naming the fix `--model.patch_size [32,32,64]` | test_impossible_settings_are_refused_before_any_work[backbone-patch] |
| 23 | `--data.patch_size` given (patch size is declared on the model) | exit 2 "declared once, on the model" | test_impossible_settings_are_refused_before_any_work[data-patch] |
| 24 | a config file that sets `data.init_args.channels` | exit 2 naming the file and the key | test_a_config_that_repeats_a_linked_value_is_refused |
| 25 | an option with a typo (`--model.lr_encodr`) | exit 2 "Option 'lr_encodr' is not accepted (did you mean 'lr_encoder'?)" | test_impossible_settings_are_refused_before_any_work[typo] |
| 26 | a word where a number goes (`--model.lr_encoder abc`) | exit 2 "model.lr_encoder: Expected a float" | test_impossible_settings_are_refused_before_any_work[not-a-number] |
| 27 | `--ckpt_path last` with no checkpoint (Lightning would start over silently) | exit 2 "no last.ckpt under ... nothing to resume" | test_impossible_settings_are_refused_before_any_work[nothing-to-resume] |
| 28 | `--ckpt_path` a skeleton checkpoint for a lesion run (LightningCLI builds the checkpoint's model) | exit 2 naming the checkpoint, the model's 10 labels and the data module's 2; nothing trained | test_a_checkpoint_of_another_model_is_refused |
| 29 | `sap test` on a cohort whose split leaves no test case | exit 2 "ran on no case" (was: exit 0, nothing run) | test_evaluation_on_no_case_fails[test] |
| 30 | `sap validate` with no validation case | exit 2 "ran on no case" | test_evaluation_on_no_case_fails[validate] |
| 31 | `sap configs show nonexistent` | exit 2 listing the packaged names; no traceback | test_unknown_packaged_config_is_one_message |
| 32 | `sap configs show lesion` into a closed pipe (`| head`) | exit 141, nothing on stderr (was: BrokenPipeError traceback) | test_a_closed_pipe_ends_quietly |
| 33 | `--traceback` or `SAP_TRACEBACK=1` | the full traceback of the same error | test_traceback_on_request |
| 34 | SIGTERM mid-epoch | exit 143, "stopped by SIGTERM; last checkpoint: .../last.ckpt"; resume with `--ckpt_path last` finishes with the uninterrupted step count | test_sigterm_mid_epoch_saves_and_resumes |
| 35 | SIGINT (Ctrl+C) mid-epoch | exit 130, "stopped by SIGINT", checkpoint named and readable | test_sigint_saves_and_says_where |
| 36 | SIGKILL mid-run, `--model.init` file deleted before resuming | resume from the last epoch's last.ckpt finishes; weights and optimiser bitwise equal to an uninterrupted run; the init source stays recorded | test_sigkill_then_resume_without_the_init_file_matches_an_uninterrupted_run |
| 37 | resume with a larger `--trainer.max_epochs` | extends the run: step count and recorded schedule of the new length | test_sigkill_then_resume_without_the_init_file_matches_an_uninterrupted_run |
| 38 | packaged CPU config, run stopped after epoch 1 of 3 | last.ckpt exists after every epoch (was: only at the end) | test_sigkill_then_resume_without_the_init_file_matches_an_uninterrupted_run |
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sap.cli import main
from sap.zoo import CheckpointError, load_pretrained
from sap.zoo.catalogue import ModelZoo
from tests.helpers.faults import tree_digest
from tests.helpers.training import (
    differing_tensors,
    exit_status,
    fit_args,
    last_checkpoints,
    load,
    run_sap,
    sap_process,
    tiny_cohorts,
    wait_until,
)

TEXT = "these are my notes, not a checkpoint\n"


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cohorts(tmp_path_factory.mktemp("cohorts"))


@pytest.fixture(scope="module")
def skeleton_checkpoint(cohorts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("skeleton")
    assert main(fit_args("skeleton-cpu-small", cohorts / "anatomy", out, 1)) == 0
    (path,) = out.rglob("last.ckpt")
    return path


def _sap(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``sap ARGV`` in this process: exit status and stderr."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse / --help
        status = stop.code if isinstance(stop.code, int) else 2
    return status, capsys.readouterr().err


def _refused(status: int, error: str, *expected: str) -> None:
    assert status == 2, error
    assert "Traceback" not in error, error
    for text in expected:
        assert text in error, error


@pytest.mark.parametrize("where", ["ckpt_path", "init"])
def test_a_text_file_is_refused_as_a_checkpoint(
    where: str, cohorts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.ckpt"
    notes.write_text(TEXT, encoding="utf-8")
    option = "--ckpt_path" if where == "ckpt_path" else "--model.init"
    before = tree_digest(cohorts)
    args = fit_args("lesion-cpu-small", cohorts / "lesions", tmp_path / "out", 1, option, notes)
    status, error = _sap(args, capsys)
    _refused(status, error, str(notes), "is not a PyTorch checkpoint", "text file starting with")
    assert not (tmp_path / "out").exists() and tree_digest(cohorts) == before


def test_load_pretrained_says_what_a_text_file_is(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="text file starting with 'root:x:0:0"):
        load_pretrained(passwd)


def test_predict_names_a_text_file_given_as_model(
    cohorts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "model.ckpt"
    notes.write_text(TEXT, encoding="utf-8")
    case = sorted(p for p in (cohorts / "lesions").iterdir() if p.is_dir())[0]
    out = tmp_path / "out"
    status, error = _sap(["predict", case, out, "--lesion-model", notes, "--no-progress"], capsys)
    _refused(status, error, str(notes), "text file")
    assert not out.exists()


@pytest.mark.parametrize(
    ("init", "expected"),
    [
        ("sap-skeleton-phantm", "Did you mean 'sap-skeleton-phantom'"),
        ("runs/skeleton/last.ckpt", "runs/skeleton/last.ckpt does not exist"),
        ("{cohort}", "without config.json"),
        ("hf://not a repo", "is not a repository id"),
    ],
    ids=["zoo-typo", "missing-path", "not-an-export", "bad-hub-uri"],
)
def test_bad_init_sources_fail_when_the_model_is_built(
    init: str,
    expected: str,
    cohorts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    init = init.format(cohort=cohorts / "lesions")
    out = tmp_path / "out"
    args = fit_args("lesion-cpu-small", cohorts / "lesions", out, 1, "--model.init", init)
    status, error = _sap(args, capsys)
    _refused(status, error, expected)
    assert not out.exists(), "refused before the Trainer starts"


def _bundled_skeleton_copy(folder: Path) -> Path:
    source = ModelZoo.default().get("sap-skeleton-phantom").bundled_path
    assert source is not None
    shutil.copytree(source, folder)
    return folder


def test_init_export_with_modified_weights_is_refused(cohorts: Path, tmp_path: Path) -> None:
    export = _bundled_skeleton_copy(tmp_path / "skeleton-export")
    weights = export / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    args = fit_args("lesion-cpu-small", cohorts / "lesions", out, 1, "--model.init", export)
    result = run_sap([str(a) for a in args], cwd=tmp_path)
    _refused(result.returncode, result.stderr, "sha256", str(weights))
    assert not list(out.rglob("*.ckpt"))


def test_channel_order_mismatch_is_refused_with_the_fix(cohorts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = fit_args(
        "lesion-cpu-small",
        cohorts / "lesions",
        out,
        1,
        "--model.init",
        "sap-skeleton-phantom",
        "--model.channels",
        "[b1000,T1]",
    )
    result = run_sap(args, cwd=tmp_path)
    _refused(
        result.returncode,
        result.stderr,
        "['T1', 'b1000']",
        "same channels in another order",
        "--model.channels [T1, b1000]",
    )
    assert not list(out.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("config", "extra", "expected"),
    [
        (
            "lesion-cpu-small",
            ["--model.transfer", "decoder"],
            "model.transfer: Expected a typing.Literal['encoder+decoder', 'encoder']",
        ),
        ("lesion-cpu-small", ["--model.lr_encoder", "-1"], "model.lr_encoder must be > 0, got -1"),
        ("lesion-cpu-small", ["--model.lr_head", "0"], "model.lr_head must be > 0"),
        ("skeleton-cpu-small", ["--model.lr", "-1"], "model.lr must be > 0"),
        ("lesion-cpu-small", ["--model.weight_decay", "-1"], "model.weight_decay must be >= 0"),
        ("lesion-cpu-small", ["--model.warmup_epochs", "-1"], "model.warmup_epochs must be >= 0"),
        ("lesion-cpu-small", ["--model.sw_overlap", "1"], "model.sw_overlap must be >= 0 and < 1"),
        (
            "lesion-cpu-small",
            ["--model.detection_threshold", "1.5"],
            "model.detection_threshold must be > 0 and <= 1",
        ),
        ("lesion-cpu-small", ["--trainer.max_epochs", "-1"], "needs a finite length"),
        ("lesion-cpu-small", ["--trainer.max_epochs", "0"], "trainer.max_epochs is 0"),
        ("lesion-cpu-small", ["--trainer.max_steps", "0"], "trainer.max_steps is 0"),
        (
            "lesion-cpu-small",
            ["--model.backbone", "unet_resnet18", "--model.patch_size", "[32,32,48]"],
            "--model.patch_size [32,32,64]",
        ),
        ("lesion-cpu-small", ["--data.patch_size", "[16,16,32]"], "declared once, on the model"),
        (
            "lesion-cpu-small",
            ["--model.lr_encodr", "1"],
            "Option 'lr_encodr' is not accepted (did you mean 'lr_encoder'?)",
        ),
        ("lesion-cpu-small", ["--model.lr_encoder", "abc"], "model.lr_encoder: Expected a float"),
        ("lesion-cpu-small", ["--ckpt_path", "last"], "nothing to resume"),
    ],
    ids=[
        "transfer",
        "lr-negative",
        "lr-zero",
        "skeleton-lr",
        "weight-decay",
        "warmup",
        "overlap",
        "threshold",
        "epochs-infinite",
        "epochs-zero",
        "steps-zero",
        "backbone-patch",
        "data-patch",
        "typo",
        "not-a-number",
        "nothing-to-resume",
    ],
)
def test_impossible_settings_are_refused_before_any_work(
    config: str,
    extra: list[str],
    expected: str,
    cohorts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = cohorts / ("anatomy" if config.startswith("skeleton") else "lesions")
    out = tmp_path / "out"
    args = ["fit", "--config", config, "--data.data_dir", data, "--trainer.default_root_dir", out]
    status, error = _sap([*args, *extra], capsys)
    _refused(status, error, expected)
    assert len([line for line in error.splitlines() if line.startswith("sap fit:")]) == 1
    assert not out.exists()


def test_a_config_that_repeats_a_linked_value_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(
        "model:\n  class_path: sap.tasks.LesionFinetuning\n"
        "data:\n  class_path: sap.data.LesionDataModule\n"
        "  init_args:\n    data_dir: x\n    channels: [T1, b1000]\n",
        encoding="utf-8",
    )
    status, error = _sap(["fit", "--config", config], capsys)
    _refused(status, error, str(config), "data.init_args.channels", "--model.channels")


def test_a_checkpoint_of_another_model_is_refused(
    cohorts: Path, skeleton_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = fit_args("lesion-cpu-small", cohorts / "lesions", out, 1)
    result = run_sap([*args, "--ckpt_path", str(skeleton_checkpoint)], cwd=tmp_path)
    _refused(
        result.returncode,
        result.stderr,
        str(skeleton_checkpoint),
        "AnatomicalPretraining",
        "but the data module LesionDataModule gives ['background', 'lesion']",
    )
    assert not list(out.rglob("*.ckpt"))


@pytest.mark.parametrize("command", ["test", "validate"])
def test_evaluation_on_no_case_fails(
    command: str, cohorts: Path, skeleton_checkpoint: Path, tmp_path: Path
) -> None:
    args = [
        command,
        "--config",
        "skeleton-cpu-small",
        "--data.data_dir",
        str(cohorts / "anatomy"),
        "--data.val_fraction",
        "0",
        "--model.patch_size",
        "[16,16,32]",
        "--trainer.default_root_dir",
        str(tmp_path / "out"),
        "--ckpt_path",
        str(skeleton_checkpoint),
    ]
    result = run_sap(args, cwd=tmp_path)
    _refused(result.returncode, result.stderr, f"sap {command} ran on no case", "--data.test_dir")


def test_unknown_packaged_config_is_one_message(capsys: pytest.CaptureFixture[str]) -> None:
    status, error = _sap(["configs", "show", "nonexistent"], capsys)
    _refused(status, error, "No packaged config named 'nonexistent'", "lesion-cpu-small")


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sap.cli", "configs", "show", "lesion"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before sap writes, as with `| head -0`
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, error
    assert error == ""


def test_traceback_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sap.errors import MissingPathError

    with pytest.raises(MissingPathError, match="nonexistent"):
        main(["--traceback", "configs", "show", "nonexistent"])
    monkeypatch.setenv("SAP_TRACEBACK", "1")
    with pytest.raises(MissingPathError, match="nonexistent"):
        main(["configs", "show", "nonexistent"])


# ----------------------------------------------------------------------- stopped runs

SLOW = "--trainer.callbacks+=tests.helpers.training.SlowBatches"


def _lesion_run(cohorts: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    args = fit_args("lesion-cpu-small", cohorts / "lesions", out, epochs, *extra)
    return [str(a) for a in args]


def _signalled(cohorts: Path, tmp_path: Path, signum: int) -> tuple[int, str, Path]:
    """A 3-epoch run signalled at batch 2 of epoch 1: exit status, output, run folder."""
    out = tmp_path / "run"
    log = tmp_path / "run.log"
    process = sap_process(_lesion_run(cohorts, out, 3, SLOW), cwd=tmp_path, log=log)
    try:
        wait_until(lambda: "batch 1/2" in log.read_text(encoding="utf-8"))
        process.send_signal(signum)
        status = exit_status(process.wait(timeout=300))
    finally:
        process.kill()
    return status, log.read_text(encoding="utf-8"), out


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_resumes(cohorts: Path, tmp_path: Path) -> None:
    status, output, out = _signalled(cohorts, tmp_path, signal.SIGTERM)
    (checkpoint,) = last_checkpoints(out)
    assert status == 143, output[-3000:]
    assert f"Training stopped by SIGTERM; last checkpoint: {checkpoint}" in output
    (first_epoch,) = out.rglob("epoch=0-step=*.ckpt")
    steps_per_epoch = int(first_epoch.stem.split("step=")[1])
    stopped_at = load(checkpoint)["global_step"]
    assert steps_per_epoch < stopped_at < 2 * steps_per_epoch, "saved mid-epoch, after its batch"

    resumed = run_sap(_lesion_run(cohorts, out, 3, "--ckpt_path", "last"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = load(last_checkpoints(out)[-1])
    assert final["global_step"] == 3 * steps_per_epoch, "the uninterrupted run's step count"
    assert final["sap_schedule"]["total_steps"] == 3 * steps_per_epoch, "the same schedule"


@pytest.mark.slow
def test_sigint_saves_and_says_where(cohorts: Path, tmp_path: Path) -> None:
    status, output, out = _signalled(cohorts, tmp_path, signal.SIGINT)
    (checkpoint,) = last_checkpoints(out)
    assert status == 130, output[-3000:]
    assert f"Training stopped by SIGINT; last checkpoint: {checkpoint}" in output
    assert "Traceback" not in output
    assert load(checkpoint)["global_step"] > 0


@pytest.mark.slow
def test_sigkill_then_resume_without_the_init_file_matches_an_uninterrupted_run(
    cohorts: Path, tmp_path: Path
) -> None:
    """Fine-tune from a pretrained export, SIGKILL the run, delete the export, resume, finish:
    the result is the uninterrupted run's, bit for bit (epoch-boundary resume on CPU)."""
    before = tree_digest(cohorts)
    init = _bundled_skeleton_copy(tmp_path / "pretrained")
    reference = tmp_path / "reference"
    result = run_sap(_lesion_run(cohorts, reference, 3, "--model.init", str(init)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    out = tmp_path / "run"
    log = tmp_path / "run.log"
    process = sap_process(_lesion_run(cohorts, out, 3, "--model.init", str(init)), tmp_path, log)
    try:
        wait_until(lambda: bool(last_checkpoints(out)))  # written after the first epoch
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    killed_at = load(last_checkpoints(out)[-1])["global_step"]
    shutil.rmtree(init)

    resumed = run_sap(_lesion_run(cohorts, out, 3, "--model.init", str(init), "--ckpt_path",
                                  "last"), cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final, expected = load(last_checkpoints(out)[-1]), load(last_checkpoints(reference)[-1])
    assert 0 < killed_at < final["global_step"] == expected["global_step"]
    assert differing_tensors(final["state_dict"], expected["state_dict"]) == []
    for mine, theirs in zip(
        final["optimizer_states"][0]["state"].values(),
        expected["optimizer_states"][0]["state"].values(),
    ):
        assert differing_tensors(mine, theirs) == []
    assert final["sap_transfer"]["source"] == str(init), "the init source stays recorded"
    assert final["sap_transfer"]["base_model"] == expected["sap_transfer"]["base_model"]

    longer = run_sap(_lesion_run(cohorts, out, 4, "--ckpt_path", "last"), cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr[-3000:]
    extended = load(last_checkpoints(out)[-1])
    steps_per_epoch = expected["global_step"] // 3
    assert extended["global_step"] == 4 * steps_per_epoch
    assert extended["sap_schedule"]["total_steps"] == 4 * steps_per_epoch
    assert "with a schedule of" in longer.stderr
    assert tree_digest(cohorts) == before
