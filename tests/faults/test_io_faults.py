"""Fault catalogue, output safety: nothing escapes OUT, nothing is lost, nothing half-written.

Every test runs the command as a user does (``sap ...`` through ``sap.cli.main`` or a real
subprocess) on files in a temporary folder, and checks the exact outcome: the exit status,
that the message names the file or folder and the problem, that the inputs are unchanged
(:func:`tests.helpers.faults.tree_digest` before and after) and that no partial output is
left where it could be trusted.

| # | input / fault | expected outcome | test |
|---|---|---|---|
| 1 | manifest case_id `../victim/metastatic_001` | exit 2 naming the manifest and row 2; nothing written anywhere | test_unsafe_case_id_in_a_manifest_is_refused[parent] |
| 2 | manifest case_id `../../x` | exit 2, manifest and row named; nothing written | test_unsafe_case_id_in_a_manifest_is_refused[grandparent] |
| 3 | manifest case_id an absolute path | exit 2, manifest and row named; nothing written | test_unsafe_case_id_in_a_manifest_is_refused[absolute] |
| 4 | manifest case_id `..` | exit 2, manifest and row named; nothing written | test_unsafe_case_id_in_a_manifest_is_refused[dotdot] |
| 5 | manifest case_id with a tab (control character) | exit 2, manifest and row named | test_unsafe_case_id_in_a_manifest_is_refused[control] |
| 6 | manifest case_id starting with `.` (hidden) | exit 2, manifest and row named | test_unsafe_case_id_in_a_manifest_is_refused[hidden] |
| 7 | manifest case_id longer than 255 bytes | exit 2, manifest and row named | test_unsafe_case_id_in_a_manifest_is_refused[long] |
| 8 | manifest case_id empty | exit 2, "row 2 has an empty case_id" | test_unsafe_case_id_in_a_manifest_is_refused[empty] |
| 9 | Python API: a CaseSource with id `../x` | InputError naming the id; OUT not created | test_predict_cases_refuses_an_unsafe_case_id_from_python |
| 10 | OUT equal to the input cohort (with and without --overwrite) | exit 2 "is the input folder", no --overwrite hint; cohort unchanged | test_out_equal_to_the_cohort_is_refused_without_suggesting_overwrite |
| 11 | OUT inside an input case folder | exit 2 "lies inside the input folder" | test_out_inside_or_around_the_inputs_is_refused[inside_case] |
| 12 | OUT inside the input cohort | exit 2 "lies inside the input folder" | test_out_inside_or_around_the_inputs_is_refused[inside_cohort] |
| 13 | OUT a folder that contains the input cohort | exit 2 "contains the input folder" | test_out_inside_or_around_the_inputs_is_refused[around] |
| 14 | OUT a symbolic link to the cohort | exit 2 "is the input folder" | test_out_inside_or_around_the_inputs_is_refused[symlink] |
| 15 | manifest input, OUT the folder holding its case folders | exit 2 "is the input folder" | test_out_equal_to_the_cohort_of_a_manifest_is_refused |
| 16 | Python API: Prediction.save into a case folder holding T1.nii.gz | OutputFolderError "holds input scans"; no lesion.nii.gz written | test_prediction_is_never_saved_beside_input_scans |
| 17 | `sap zoo export CKPT COHORT --overwrite` | exit 1 "was not written by `sap zoo export`"; cohort unchanged | test_zoo_export_overwrite_refuses_a_folder_that_is_no_export |
| 18 | `sap zoo export --overwrite` onto an export holding a user's file | exit 1 naming the file; export unchanged | test_zoo_export_overwrite_refuses_an_export_holding_foreign_files |
| 19 | exports created 0700/0600 | folder and files follow the umask (0750/0640 under umask 027) | test_exports_and_predictions_follow_the_umask |
| 20 | `sap phantom COHORT --overwrite` onto a predict output | exit 2 "holds the output of `sap predict`"; unchanged | test_phantom_overwrite_refuses_other_outputs |
| 21 | `sap phantom --overwrite` onto a cohort holding a user's file | exit 2 naming the file; unchanged | test_phantom_overwrite_refuses_a_cohort_holding_foreign_files |
| 22 | `sap evaluate --out` equal to `--ref` | exit 2 "is the input folder", no --overwrite hint; refs unchanged | test_evaluate_out_among_the_inputs_is_refused[out_is_ref] |
| 23 | `sap evaluate --out` inside `--pred` | exit 2 "lies inside the input folder" | test_evaluate_out_among_the_inputs_is_refused[out_in_pred] |
| 24 | `sap evaluate` into an earlier evaluation | exit 2 asking for --overwrite; with it, replaced whole | test_evaluate_replaces_an_earlier_evaluation_only_with_overwrite |
| 25 | `sap evaluate --out` a foreign non-empty folder, --overwrite | exit 2 "was not written by `sap evaluate`"; unchanged | test_evaluate_overwrite_refuses_a_foreign_folder |
| 26 | `sap evaluate` fails while writing its files | no --out folder and no staged folder left | test_evaluate_failing_while_writing_leaves_nothing |
| 27 | `sap predict --overwrite` onto an evaluation folder | exit 2 "holds the output of `sap evaluate`"; unchanged | test_predict_overwrite_refuses_another_commands_output |
| 28 | `--overwrite` leaves stale skeleton / probability maps | the case folder is replaced as a unit: no stale file | test_overwrite_replaces_a_case_as_a_unit |
| 29 | `--overwrite` with fewer cases than the earlier run | earlier cases not predicted again are removed; summary lists this run | test_overwrite_removes_cases_of_the_earlier_run |
| 30 | rerun with other settings, no --overwrite | exit 2 naming the changed setting; OUT unchanged | test_rerun_with_other_settings_is_refused |
| 31 | SIGTERM while a case is written (real process) | exit 143, no temporary folder, finished case kept; rerun resumes and says so | test_interrupted_predict_cleans_up_and_resumes[SIGTERM] |
| 32 | SIGINT (Ctrl-C) while a case is written (real process) | exit 130, same cleanup and resume | test_interrupted_predict_cleans_up_and_resumes[SIGINT] |
| 33 | leftovers of a killed run (kill -9): staged folder, unfinished case | rerun removes the leftovers and predicts the unfinished case | test_leftovers_of_a_killed_run_are_removed_on_rerun |
| 34 | disk full (ENOSPC) while writing one case | that case fails alone naming the file; no case folder; summary says failed; exit 1; rerun predicts it | test_disk_full_while_writing_a_case_fails_that_case_alone |
| 35 | disk full while writing summary.csv | exit 2 naming summary.csv; rerun resumes and writes it | test_disk_full_while_writing_the_summary |
| 36 | a folder the user made in OUT with a case's name | that case fails, the folder is not replaced | test_a_foreign_folder_in_out_is_never_replaced |
| 37 | a tampered marker listing `../victim` as a finished case | nothing outside OUT is touched | test_a_tampered_marker_cannot_reach_outside_out |
| 38 | OUT cannot be created (permission denied) | exit 2 naming the folder and the error | test_out_that_cannot_be_created_is_reported |
| 39 | case ids with spaces and non-ASCII letters | predicted into folders of those names | test_unicode_and_spaces_in_case_ids_work |
| 40 | `sap demo --out` a non-empty foreign folder | exit 2 "not empty"; nothing written | test_demo_refuses_a_foreign_output_folder |
| 41 | duplicate case ids in a manifest | exit 2 naming both rows; nothing written | test_duplicate_case_ids_in_a_manifest_are_refused |
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sap.io import MARKER_FILE, OutputFolderError, atomic_write
from tests.helpers.faults import (
    SLOW_SAP,
    lesion_checkpoint,
    manifest,
    run_sap,
    tree_digest,
    write_case,
    write_cohort,
)
from tests.helpers.training import restore_default_signals


def predict_args(source: Path, out: Path, model: Path, *extra: str) -> list:
    return ["predict", source, out, "--lesion-model", model, "--no-progress", *extra]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- case ids


UNSAFE_IDS = {
    "parent": ("../victim/metastatic_001", "contains a path separator"),
    "grandparent": ("../../x", "contains a path separator"),
    "absolute": ("/tmp/sap-absolute-case", "contains a path separator"),
    "dotdot": ("..", "is a relative folder reference"),
    "control": ("a\tb", "contains control characters"),
    "hidden": (".hidden", "starts with '.'"),
    "long": ("x" * 300, "is longer than 255 bytes"),
    "empty": ("", "row 2 has an empty case_id"),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE_IDS))
def test_unsafe_case_id_in_a_manifest_is_refused(kind, cohort, lesion_model, tmp_path, capsys):
    case_id, problem = UNSAFE_IDS[kind]
    work = tmp_path / "work"
    work.mkdir()
    cases = manifest(work / "cases.csv", [(case_id, cohort / "case_0")])
    before = tree_digest(tmp_path)
    code, _, err = run_sap(predict_args(cases, work / "OUT", lesion_model), capsys)
    assert code == 2
    assert str(cases) in err and problem in err
    if kind != "empty":
        assert "row 2: case_id is not a plain name" in err
    assert tree_digest(tmp_path) == before  # not even OUT was created
    assert not Path("/tmp/sap-absolute-case").exists()


def test_predict_cases_refuses_an_unsafe_case_id_from_python(cohort, lesion_model, tmp_path):
    from sap.inference import CaseSource, InputError, Predictor, load_model, predict_cases

    predictor = Predictor(load_model(lesion_model, task="lesion"))
    before = tree_digest(tmp_path)
    with pytest.raises(InputError, match=r"Case '\.\./x': Invalid case id: .* path separator"):
        predict_cases([CaseSource("../x", cohort / "case_0")], tmp_path / "OUT", predictor)
    assert tree_digest(tmp_path) == before


def test_duplicate_case_ids_in_a_manifest_are_refused(cohort, lesion_model, tmp_path, capsys):
    cases = manifest(tmp_path / "cases.csv", [("a", cohort / "case_0"), ("a", cohort / "case_1")])
    before = tree_digest(tmp_path)
    code, _, err = run_sap(predict_args(cases, tmp_path / "OUT", lesion_model), capsys)
    assert code == 2 and "duplicate case_id in rows 2 and 3" in err and str(cases) in err
    assert tree_digest(tmp_path) == before


def test_unicode_and_spaces_in_case_ids_work(cohort, lesion_model, tmp_path, capsys):
    names = ["patient 01", "Müller_中文"]
    cases = manifest(
        tmp_path / "cases.csv", [(names[0], cohort / "case_0"), (names[1], cohort / "case_1")]
    )
    code, out, _ = run_sap(predict_args(cases, tmp_path / "OUT", lesion_model), capsys)
    assert code == 0, out
    for name in names:
        assert (tmp_path / "OUT" / name / "lesion.nii.gz").is_file()


# ---------------------------------------------------------------- OUT among the inputs


def test_out_equal_to_the_cohort_is_refused_without_suggesting_overwrite(
    cohort, lesion_model, capsys
):
    before = tree_digest(cohort)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_sap(predict_args(cohort, cohort, lesion_model, *extra), capsys)
        assert code == 2
        assert f"output folder {cohort} is the input folder {cohort}" in err
        assert "--overwrite" not in err
    assert tree_digest(cohort) == before


OUT_PLACES = {
    "inside_case": lambda cohort: (cohort / "case_0" / "predictions", "lies inside"),
    "inside_cohort": lambda cohort: (cohort / "predictions", "lies inside"),
    "around": lambda cohort: (cohort.parent, "contains"),
    "symlink": lambda cohort: (cohort.parent / "link", "is"),
}


@pytest.mark.parametrize("place", sorted(OUT_PLACES))
def test_out_inside_or_around_the_inputs_is_refused(place, cohort, lesion_model, capsys):
    out, relation = OUT_PLACES[place](cohort)
    if place == "symlink":
        out.symlink_to(cohort, target_is_directory=True)
    before = tree_digest(cohort)
    code, _, err = run_sap(predict_args(cohort, out, lesion_model), capsys)
    assert code == 2
    assert f"output folder {out} {relation} the input folder" in err
    assert "--overwrite" not in err
    assert tree_digest(cohort) == before
    assert not (cohort / "case_0" / "predictions").exists()
    assert not (cohort / "predictions").exists()


def test_out_equal_to_the_cohort_of_a_manifest_is_refused(cohort, lesion_model, capsys):
    cases = manifest(cohort.parent / "cases.csv", [("case_0", cohort / "case_0")])
    before = tree_digest(cohort)
    code, _, err = run_sap(predict_args(cases, cohort, lesion_model), capsys)
    assert code == 2 and f"output folder {cohort} is the input folder {cohort}" in err
    assert tree_digest(cohort) == before


def test_prediction_is_never_saved_beside_input_scans(cohort, lesion_model):
    from sap.inference import Predictor, load_model

    prediction = Predictor(load_model(lesion_model, task="lesion")).predict(cohort / "case_1")
    before = tree_digest(cohort)
    (cohort / "case_1" / "lesion.nii.gz").unlink()  # an unlabelled case
    with pytest.raises(OutputFolderError, match=r"holds input scans \(T1.nii.gz, b1000.nii.gz\)"):
        prediction.save(cohort / "case_1", overwrite=True)
    assert not (cohort / "case_1" / "lesion.nii.gz").exists()
    assert set(tree_digest(cohort)) == set(before) - {"case_1/lesion.nii.gz"}


# ---------------------------------------------------------------- --overwrite: exports, cohorts


def test_zoo_export_overwrite_refuses_a_folder_that_is_no_export(cohort, tmp_path, capsys):
    checkpoint = lesion_checkpoint(tmp_path / "ckpt" / "lesion.ckpt")
    before = tree_digest(cohort)
    code, _, err = run_sap(["zoo", "export", checkpoint, cohort, "--overwrite"], capsys)
    assert code == 1
    assert f"{cohort} is not empty and was not written by `sap zoo export`" in err
    assert tree_digest(cohort) == before
    assert listing(cohort.parent) == ["ckpt", "cohort"]  # no staged folder left


def test_zoo_export_overwrite_refuses_an_export_holding_foreign_files(tmp_path, capsys):
    checkpoint = lesion_checkpoint(tmp_path / "lesion.ckpt")
    export = tmp_path / "export"
    assert run_sap(["zoo", "export", checkpoint, export], capsys)[0] == 0
    (export / "notes.txt").write_text("my notes")
    before = tree_digest(export)
    code, _, err = run_sap(["zoo", "export", checkpoint, export, "--overwrite"], capsys)
    assert code == 1 and "['notes.txt'], which `sap zoo export` did not write" in err
    assert tree_digest(export) == before
    (export / "notes.txt").unlink()
    assert run_sap(["zoo", "export", checkpoint, export, "--overwrite"], capsys)[0] == 0


def test_exports_and_predictions_follow_the_umask(cohort, lesion_model, tmp_path, capsys):
    checkpoint = lesion_checkpoint(tmp_path / "lesion.ckpt")
    previous = os.umask(0o027)
    try:
        assert run_sap(["zoo", "export", checkpoint, tmp_path / "export"], capsys)[0] == 0
        code, out, _ = run_sap(predict_args(cohort, tmp_path / "OUT", lesion_model), capsys)
        assert code == 0, out
    finally:
        os.umask(previous)
    for folder in (tmp_path / "export", tmp_path / "OUT", tmp_path / "OUT" / "case_0"):
        assert folder.stat().st_mode & 0o777 == 0o750, folder
        for file in folder.iterdir():
            if file.is_file():
                assert file.stat().st_mode & 0o777 == 0o640, file


def test_phantom_overwrite_refuses_other_outputs(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    assert run_sap(predict_args(cohort, out, lesion_model), capsys)[0] == 0
    before = tree_digest(out)
    code, _, err = run_sap(["phantom", out, "--healthy", "1", "--overwrite"], capsys)
    assert code == 2 and f"{out} holds the output of `sap predict`, not of `sap phantom`" in err
    assert tree_digest(out) == before


def test_phantom_overwrite_refuses_a_cohort_holding_foreign_files(tmp_path, capsys):
    out = tmp_path / "phantom"
    tiny = ["--healthy", "1", "--metastatic", "0", "--shape", "24", "16", "48"]
    tiny += ["--spacing-mm", "20", "20", "20", "--quiet"]
    assert run_sap(["phantom", out, *tiny], capsys)[0] == 0
    (out / "splits.csv").write_text("case_id,fold\n")
    before = tree_digest(out)
    code, _, err = run_sap(["phantom", out, *tiny, "--overwrite"], capsys)
    assert code == 2 and "['splits.csv'], which `sap phantom` did not write" in err
    assert tree_digest(out) == before
    assert listing(tmp_path) == ["phantom"]


# ---------------------------------------------------------------- sap evaluate --out


@pytest.fixture
def predicted(cohort, lesion_model, tmp_path, capsys):
    """``tmp_path/pred``: a predict output of the cohort."""
    assert run_sap(predict_args(cohort, tmp_path / "pred", lesion_model), capsys)[0] == 0
    return tmp_path / "pred"


def evaluate_args(pred: Path, ref: Path, out: Path, *extra: str) -> list:
    return ["evaluate", "--pred", pred, "--ref", ref, "--out", out, "--bootstrap", "0", *extra]


@pytest.mark.parametrize("where", ["out_is_ref", "out_in_pred"])
def test_evaluate_out_among_the_inputs_is_refused(where, cohort, predicted, capsys):
    out = cohort if where == "out_is_ref" else predicted / "evaluation"
    relation = "is" if where == "out_is_ref" else "lies inside"
    before = tree_digest(cohort.parent)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_sap(evaluate_args(predicted, cohort, out, *extra), capsys)
        assert code == 2 and f"output folder {out} {relation} the input folder" in err
        assert "--overwrite" not in err
    assert tree_digest(cohort.parent) == before


def test_evaluate_replaces_an_earlier_evaluation_only_with_overwrite(
    cohort, predicted, tmp_path, capsys
):
    out = tmp_path / "evaluation"
    args = evaluate_args(predicted, cohort, out, "--no-plots", "--no-progress")
    assert run_sap(args, capsys)[0] == 0
    before = tree_digest(out)
    code, _, err = run_sap(args, capsys)
    assert code == 2 and "already holds an earlier output of `sap evaluate`" in err
    assert "--overwrite" in err and tree_digest(out) == before
    assert run_sap([*args, "--overwrite"], capsys)[0] == 0
    assert json.loads((out / MARKER_FILE).read_text())["command"] == "sap evaluate"


def test_evaluate_overwrite_refuses_a_foreign_folder(cohort, predicted, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "thesis.tex").write_text("chapter 1")
    before = tree_digest(tmp_path)
    code, _, err = run_sap(evaluate_args(predicted, cohort, out, "--overwrite"), capsys)
    assert code == 2 and "was not written by `sap evaluate`" in err
    assert tree_digest(tmp_path) == before


def test_evaluate_failing_while_writing_leaves_nothing(
    cohort, predicted, tmp_path, capsys, monkeypatch
):
    import sap.metrics.report as report

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "_write_plots", disk_full)
    before = tree_digest(tmp_path)
    code, _, err = run_sap(evaluate_args(predicted, cohort, tmp_path / "evaluation"), capsys)
    assert code == 2 and "No space left on device" in err
    assert tree_digest(tmp_path) == before  # no --out folder, no staged sibling


# ---------------------------------------------------------------- sap predict --overwrite, reruns


def test_predict_overwrite_refuses_another_commands_output(cohort, predicted, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert run_sap(evaluate_args(predicted, cohort, out, "--no-plots"), capsys)[0] == 0
    model = json.loads((predicted / MARKER_FILE).read_text())["settings"]["lesion_model"]
    before = tree_digest(out)
    code, _, err = run_sap(predict_args(cohort, out, model, "--overwrite"), capsys)
    assert code == 2 and "holds the output of `sap evaluate`, not of `sap predict`" in err
    assert tree_digest(out) == before


def test_overwrite_replaces_a_case_as_a_unit(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    args = predict_args(cohort, out, lesion_model)
    assert run_sap([*args, "--save-probabilities", "--png"], capsys)[0] == 0
    assert "lesion_probability.nii.gz" in listing(out / "case_0")
    assert run_sap([*args, "--overwrite"], capsys)[0] == 0
    assert listing(out / "case_0") == ["lesion.nii.gz", "lesions.csv", "lesions.json"]
    assert listing(out) == [MARKER_FILE, "case_0", "case_1", "summary.csv"]  # nothing staged


def test_overwrite_removes_cases_of_the_earlier_run(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    assert run_sap(predict_args(cohort, out, lesion_model), capsys)[0] == 0
    only = manifest(tmp_path / "one.csv", [("case_1", cohort / "case_1")])
    assert run_sap(predict_args(only, out, lesion_model, "--overwrite"), capsys)[0] == 0
    assert listing(out) == [MARKER_FILE, "case_1", "summary.csv"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 2 and summary[1].startswith("case_1,ok,")


def test_rerun_with_other_settings_is_refused(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    assert run_sap(predict_args(cohort, out, lesion_model), capsys)[0] == 0
    before = tree_digest(out)
    code, _, err = run_sap(predict_args(cohort, out, lesion_model, "--tta"), capsys)
    assert code == 2 and "made with other settings (tta: False -> True)" in err
    assert tree_digest(out) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_predict_cleans_up_and_resumes(signum, lesion_model, tmp_path, capsys):
    cohort = write_cohort(tmp_path / "cohort", n=3)
    out = tmp_path / "OUT"
    before = tree_digest(cohort)
    args = [str(a) for a in predict_args(cohort, out, lesion_model)]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAP, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        preexec_fn=restore_default_signals,
    )
    deadline = time.monotonic() + 120
    while not ((out / "case_0").is_dir() and list(out.glob(".sap-tmp-case_1-*"))):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert f"stopped ({signal.Signals(signum).name})" in stderr and "to resume" in stderr
    assert listing(out) == [MARKER_FILE, "case_0"]  # no staged folder, no half case
    assert listing(out / "case_0") == ["lesion.nii.gz", "lesions.csv", "lesions.json"]
    assert json.loads((out / MARKER_FILE).read_text())["complete"] is False
    code, stdout, _ = run_sap(args, capsys)
    assert code == 0
    assert "1 case(s) finished by an earlier run are skipped (case_0)" in stdout
    assert listing(out) == [MARKER_FILE, "case_0", "case_1", "case_2", "summary.csv"]
    assert tree_digest(cohort) == before


def test_leftovers_of_a_killed_run_are_removed_on_rerun(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    args = predict_args(cohort, out, lesion_model)
    assert run_sap(args, capsys)[0] == 0
    marker = json.loads((out / MARKER_FILE).read_text())
    marker.update(complete=False, units=["case_0"])  # killed while writing case_1
    (out / MARKER_FILE).write_text(json.dumps(marker))
    shutil.rmtree(out / "case_1")
    (out / ".sap-tmp-case_1-x1y2z3").mkdir()
    (out / ".sap-tmp-case_1-x1y2z3" / "lesion.nii.gz").write_bytes(b"")
    code, stdout, _ = run_sap(args, capsys)
    assert code == 0 and "skipped (case_0)" in stdout and "case 'case_1': " in stdout
    assert listing(out) == [MARKER_FILE, "case_0", "case_1", "summary.csv"]


def test_disk_full_while_writing_a_case_fails_that_case_alone(
    cohort, lesion_model, tmp_path, capsys, monkeypatch
):
    import nibabel

    save = nibabel.save

    def save_unless_case_1(image, filename, *args, **kwargs):
        if ".sap-tmp-case_1-" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(image, filename, *args, **kwargs)

    out = tmp_path / "OUT"
    monkeypatch.setattr(nibabel, "save", save_unless_case_1)
    code, stdout, _ = run_sap(predict_args(cohort, out, lesion_model), capsys)
    assert code == 1
    assert "case 'case_1' failed: [Errno 28] cannot write" in stdout
    assert "lesion.nii.gz: No space left on device" in stdout
    assert listing(out) == [MARKER_FILE, "case_0", "summary.csv"]
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[1].startswith("case_0,ok,") and rows[2].startswith("case_1,failed,,,,")
    monkeypatch.setattr(nibabel, "save", save)
    code, stdout, _ = run_sap(predict_args(cohort, out, lesion_model), capsys)
    assert code == 0 and "skipped (case_0)" in stdout
    assert (out / "summary.csv").read_text().count(",ok,") == 2


def test_disk_full_while_writing_the_summary(cohort, lesion_model, tmp_path, capsys, monkeypatch):
    import sap.io.folders as folders

    write = folders.write_text_atomic

    def full_for_summary(path, text):
        if Path(path).name == "summary.csv":
            return atomic_write(path, lambda tmp: _raise_enospc())
        return write(path, text)

    out = tmp_path / "OUT"
    monkeypatch.setattr(folders, "write_text_atomic", full_for_summary)
    code, _, err = run_sap(predict_args(cohort, out, lesion_model), capsys)
    assert code == 2 and f"cannot write {out / 'summary.csv'}: No space left on device" in err
    assert listing(out) == [MARKER_FILE, "case_0", "case_1"]  # no temporary file either
    monkeypatch.setattr(folders, "write_text_atomic", write)
    code, stdout, _ = run_sap(predict_args(cohort, out, lesion_model), capsys)
    assert code == 0 and "2 case(s) finished by an earlier run are skipped" in stdout
    assert (out / "summary.csv").is_file()


def _raise_enospc() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_foreign_folder_in_out_is_never_replaced(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    first = manifest(tmp_path / "first.csv", [("case_0", cohort / "case_0")])
    assert run_sap(predict_args(first, out, lesion_model), capsys)[0] == 0
    (out / "case_1").mkdir()
    (out / "case_1" / "notes.txt").write_text("mine")
    both = manifest(
        tmp_path / "both.csv", [("case_0", cohort / "case_0"), ("case_1", cohort / "case_1")]
    )
    code, stdout, _ = run_sap(predict_args(both, out, lesion_model), capsys)
    assert code == 1
    assert f"case 'case_1' failed: {out / 'case_1'} exists but was not written by" in stdout
    assert listing(out / "case_1") == ["notes.txt"]


def test_a_tampered_marker_cannot_reach_outside_out(cohort, lesion_model, tmp_path, capsys):
    out = tmp_path / "OUT"
    victim = write_case(tmp_path / "victim", seed=5)
    assert run_sap(predict_args(cohort, out, lesion_model), capsys)[0] == 0
    marker = json.loads((out / MARKER_FILE).read_text())
    marker.update(units=["../victim", "case_0", "case_1"], stale=["../victim"])
    (out / MARKER_FILE).write_text(json.dumps(marker))
    before = tree_digest(victim)
    assert run_sap(predict_args(cohort, out, lesion_model, "--overwrite"), capsys)[0] == 0
    assert tree_digest(victim) == before


def test_out_that_cannot_be_created_is_reported(
    cohort, lesion_model, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "locked" / "OUT"
    mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = run_sap(predict_args(cohort, out, lesion_model), capsys)
    assert code == 2 and f"Permission denied: '{out}'" in err
    assert not out.exists()


def test_demo_refuses_a_foreign_output_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_sap(["demo", "--quick", "--out", tmp_path], capsys)
    assert code == 2 and f"{tmp_path} is not empty and was not written by `sap demo`" in err
    assert listing(tmp_path) == ["notes.txt"]
