"""Fault catalogue, bad inputs: one validation for `sap fit` and `sap predict`, every file named.

`sap predict` checks each case with the functions `sap fit` validates a cohort with
(:mod:`sap.data.validation`): a scan one refuses, the other refuses too, with the same words.
A bad case fails alone, named with its file; the others are predicted; ``summary.csv`` lists
the failure and the exit status is 1. Inputs are never changed (tree digests before/after).

| # | input / fault | expected outcome | test |
|---|---|---|---|
| 1 | one truncated T1 among three cases | that case fails alone naming the file; others written; summary "failed"; exit 1 | test_a_bad_case_fails_alone[truncated] |
| 2 | gzip CRC damaged (trailer) | "gzip stream is damaged (BadGzipFile: CRC check failed" naming the file | test_a_bad_case_fails_alone[crc] |
| 3 | gzip data damaged mid-stream (nibabel alone reads it silently) | "gzip stream is damaged" naming the file | test_a_bad_case_fails_alone[garbled] |
| 4 | uncompressed NIfTI named .nii.gz | "not a gzip file" naming the file | test_a_bad_case_fails_alone[not_gzip] |
| 5 | gzip file with trailing garbage | "gzip stream is damaged" naming the file | test_a_bad_case_fails_alone[trailing_garbage] |
| 6 | zero-byte T1 | "Empty file" naming the file | test_a_bad_case_fails_alone[empty_file] |
| 7 | T1.nii.gz is a folder | "is a folder, not an image file" | test_a_bad_case_fails_alone[folder] |
| 8 | 4D T1 with two volumes | "is 4D with shape (14, 12, 10, 2)" | test_a_bad_case_fails_alone[4d] |
| 9 | 2D T1 | "is 2D with shape (14, 12)" | test_a_bad_case_fails_alone[2d] |
| 10 | complex-valued T1 | "unsupported voxel type complex64" | test_a_bad_case_fails_alone[complex] |
| 11 | RGB T1 | "unsupported voxel type" | test_a_bad_case_fails_alone[rgb] |
| 12 | a NaN voxel in b1000 | "channel 'b1000' has 1 NaN/Inf voxel(s)" | test_a_bad_case_fails_alone[nan_voxel] |
| 13 | all-zero T1 | predict and fit refuse alike: "channel 'T1' is constant" | test_fit_and_predict_refuse_alike[zero_t1] |
| 14 | NaN in T1's affine | both blame T1.nii.gz, not b1000 | test_fit_and_predict_refuse_alike[nan_affine_t1] |
| 15 | NaN in b1000's affine | both blame b1000.nii.gz | test_fit_and_predict_refuse_alike[nan_affine_b1000] |
| 16 | b1000 covering half of T1 | both: "covers only 51% of T1's field of view" | test_fit_and_predict_refuse_alike[half_overlap] |
| 17 | gzip CRC damaged | both name the file and "CRC check failed" | test_fit_and_predict_refuse_alike[crc] |
| 18 | voxel spacing x1000 (header in metres) | fit refuses, predict warns; both name the value and the file; warning kept in lesions.json | test_implausible_spacing_is_refused_by_fit_and_warned_by_predict[x1000] |
| 19 | voxel spacing x1e-3 (header in micrometres) | as above | test_implausible_spacing_is_refused_by_fit_and_warned_by_predict[x0.001] |
| 20 | int16 T1 with a scale factor | predicted | test_unusual_but_valid_scans_are_predicted[int16_scaled] |
| 21 | T1 with a trailing singleton 4th axis | predicted | test_unusual_but_valid_scans_are_predicted[singleton_4d] |
| 22 | uint8 T1 | predicted | test_unusual_but_valid_scans_are_predicted[uint8] |
| 23 | empty input folder | exit 2 "holds no case"; OUT not created | test_an_input_without_cases_is_refused[empty_folder] |
| 24 | a case folder without scans among good ones | exit 2 naming the missing files; OUT not created | test_an_input_without_cases_is_refused[empty_case] |
| 25 | manifest without the b1000 column | exit 2 naming the missing column | test_an_input_without_cases_is_refused[missing_column] |
| 26 | manifest pointing to a missing file | exit 2 naming the file | test_an_input_without_cases_is_refused[missing_file] |
| 27 | symbolic-linked case folder | predicted; the linked folder unchanged | test_a_symlinked_case_is_predicted_and_left_alone |
| 28 | manifest with a UTF-8 byte-order mark | read as usual | test_manifest_dialects_are_read[bom] |
| 29 | manifest separated by `;` (spreadsheet locale) | read as usual | test_manifest_dialects_are_read[semicolon] |
| 30 | `sap evaluate --pred` = the reference cohort | exit 1 "is the reference file itself" (no perfect score) | test_evaluating_references_against_themselves_is_refused |
| 31 | predictions lying beside input scans | evaluated, with a warning naming the folder | test_predictions_beside_scans_are_flagged |
| 32 | uint8 probability map with scale 1/255 (as predict writes) | scored with --prob; refused as a binary mask without it | test_quantised_probability_maps_are_read_as_probabilities |
| 33 | uint8 probability map without scale (0-255) | exit 1 "values in [0, 255], not [0, 1]" | test_probability_maps_outside_zero_one_are_refused[uint8_unscaled] |
| 34 | probability map holding NaN | exit 1 naming the file | test_probability_maps_outside_zero_one_are_refused[nan] |
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sap.data.cases import discover_cases
from sap.data.problems import CaseValidationError
from sap.data.validation import validate_cases
from tests.helpers.faults import (
    CASE_AFFINE,
    CASE_SHAPE,
    manifest,
    run_sap,
    tree_digest,
    write_case,
    write_scan,
)


def predict(source: Path, out: Path, model: Path, capsys) -> tuple[int, str, str]:
    return run_sap(["predict", source, out, "--lesion-model", model, "--no-progress"], capsys)


def rewrite_affine(path: Path, change) -> None:
    image = nib.load(path)
    affine = image.affine.copy()
    change(affine)
    write_scan(path, np.asarray(image.dataobj), affine)


def flip_byte(path: Path, index: int) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 0x40
    path.write_bytes(bytes(data))


def rgb(path: Path) -> None:
    data = np.zeros(CASE_SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    data["R"][0] = 9
    nib.save(nib.Nifti1Image(data, np.asarray(CASE_AFFINE)), path)


def garble_middle(path: Path) -> None:
    compressed = bytearray(gzip.compress(gzip.decompress(path.read_bytes())))
    middle = len(compressed) // 2
    compressed[middle : middle + 64] = b"\x00" * 64
    path.write_bytes(bytes(compressed))


def not_gzip(path: Path) -> None:
    image = nib.load(path)
    plain = path.with_name("plain.nii")
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine), plain)
    plain.replace(path)


def as_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def with_nan_voxel(path: Path) -> None:
    image = nib.load(path)
    data = np.asarray(image.dataobj).copy()
    data[1, 2, 3] = np.nan
    write_scan(path, data, image.affine)


BREAKAGES = {
    "truncated": ("T1.nii.gz", lambda p: p.write_bytes(p.read_bytes()[:2000]), "truncated"),
    "crc": ("T1.nii.gz", lambda p: flip_byte(p, -6), "CRC check failed"),
    "garbled": ("T1.nii.gz", garble_middle, "the gzip stream is damaged"),
    "not_gzip": ("T1.nii.gz", not_gzip, "is not a gzip file"),
    "trailing_garbage": (
        "T1.nii.gz",
        lambda p: p.write_bytes(p.read_bytes() + b"garbage!"),
        "the gzip stream is damaged",
    ),
    "empty_file": ("T1.nii.gz", lambda p: p.write_bytes(b""), "Empty file"),
    "folder": ("T1.nii.gz", as_folder, "is a folder, not an image file"),
    "4d": (
        "T1.nii.gz",
        lambda p: write_scan(p, np.ones((*CASE_SHAPE, 2), np.float32)),
        "is 4D with shape (14, 12, 10, 2), expected one 3D volume",
    ),
    "2d": ("T1.nii.gz", lambda p: write_scan(p, np.ones((14, 12), np.float32)), "is 2D"),
    "complex": (
        "T1.nii.gz",
        lambda p: write_scan(p, np.ones(CASE_SHAPE, np.complex64)),
        "unsupported voxel type complex64",
    ),
    "rgb": ("T1.nii.gz", rgb, "unsupported voxel type"),
    "nan_voxel": ("b1000.nii.gz", with_nan_voxel, "channel 'b1000' has 1 NaN/Inf voxel(s)"),
}


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_a_bad_case_fails_alone(kind, lesion_model, tmp_path, capsys):
    cohort = tmp_path / "cohort"
    for index in range(3):
        write_case(cohort / f"case_{index}", seed=index)
    file_name, damage, problem = BREAKAGES[kind]
    damage(cohort / "case_1" / file_name)
    before = tree_digest(cohort)
    out = tmp_path / "OUT"
    code, stdout, _ = predict(cohort, out, lesion_model, capsys)
    assert code == 1
    failure = next(line for line in stdout.splitlines() if "case 'case_1' failed" in line)
    assert str(cohort / "case_1" / file_name) in failure and problem in failure
    assert sorted(p.name for p in out.iterdir()) == [
        ".sap-output.json",
        "case_0",
        "case_2",
        "summary.csv",
    ]
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[2].startswith("case_1,failed,,,,") and file_name in rows[2]
    assert rows[1].startswith("case_0,ok,") and rows[3].startswith("case_2,ok,")
    assert tree_digest(cohort) == before


def shifted_half(path: Path) -> None:
    rewrite_affine(path, lambda affine: affine.__setitem__((0, 3), CASE_SHAPE[0] * 2.0 / 2))


REFUSED_ALIKE = {
    "zero_t1": (
        "T1.nii.gz",
        lambda p: write_scan(p, np.zeros(CASE_SHAPE, np.float32)),
        "channel 'T1' is constant (every voxel = 0.0)",
    ),
    "nan_affine_t1": (
        "T1.nii.gz",
        lambda p: rewrite_affine(p, lambda a: a.__setitem__((0, 3), np.nan)),
        "channel 'T1' has NaN or infinite values in its affine",
    ),
    "nan_affine_b1000": (
        "b1000.nii.gz",
        lambda p: rewrite_affine(p, lambda a: a.__setitem__((1, 3), np.nan)),
        "channel 'b1000' has NaN or infinite values in its affine",
    ),
    "half_overlap": (
        "b1000.nii.gz",
        shifted_half,
        "channel 'b1000' covers only 51% of T1's field of view (at least 70% needed)",
    ),
    "crc": ("b1000.nii.gz", lambda p: flip_byte(p, -7), "CRC check failed"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED_ALIKE))
def test_fit_and_predict_refuse_alike(kind, lesion_model, tmp_path, capsys):
    file_name, damage, problem = REFUSED_ALIKE[kind]
    case = write_case(tmp_path / "cohort" / "case_0")
    damage(case / file_name)
    before = tree_digest(case)
    with pytest.raises(CaseValidationError) as refused:
        validate_cases(discover_cases(case.parent, require=("lesion",)))
    fit_problems = [line for line in str(refused.value).splitlines() if line.startswith("  - ")]
    assert len(fit_problems) == 1  # one problem, blamed on the right file
    assert f"file {case / file_name}: " in fit_problems[0] and problem in fit_problems[0]
    code, stdout, _ = predict(case.parent, tmp_path / "OUT", lesion_model, capsys)
    assert code == 1
    assert problem in stdout and str(case / file_name) in stdout
    other = "b1000.nii.gz" if file_name == "T1.nii.gz" else "T1.nii.gz"
    assert str(case / other) not in stdout
    assert not (tmp_path / "OUT" / "case_0").exists()
    assert tree_digest(case) == before


@pytest.mark.parametrize("factor", [1000.0, 0.001], ids=["x1000", "x0.001"])
def test_implausible_spacing_is_refused_by_fit_and_warned_by_predict(
    factor, lesion_model, tmp_path, capsys
):
    case = write_case(tmp_path / "cohort" / "case_0")
    for name in ("T1.nii.gz", "b1000.nii.gz", "lesion.nii.gz"):
        rewrite_affine(
            case / name, lambda affine: affine.__setitem__(np.s_[:3, :3], affine[:3, :3] * factor)
        )
    shown = f"{2 * factor:.4g} x {2 * factor:.4g} x {2.5 * factor:.4g} mm"
    problem = f"channel 'T1' has voxel spacing {shown}, outside the plausible MRI range 0.2-20 mm"
    with pytest.raises(CaseValidationError) as refused:
        validate_cases(discover_cases(case.parent))
    assert f"file {case / 'T1.nii.gz'}: {problem}" in str(refused.value)
    code, stdout, _ = predict(case.parent, tmp_path / "OUT", lesion_model, capsys)
    assert code == 0
    assert f"warning: case 'case_0', file {case / 'T1.nii.gz'}: {problem}" in stdout
    report = json.loads((tmp_path / "OUT" / "case_0" / "lesions.json").read_text())
    assert any(problem in note for note in report["metadata"]["input_warnings"])


def int16_scaled(path: Path) -> None:
    data = (np.random.default_rng(0).random(CASE_SHAPE) * 1000).astype(np.int16)
    image = nib.Nifti1Image(data, np.asarray(CASE_AFFINE))
    image.header.set_slope_inter(0.5, 10.0)
    nib.save(image, path)


VALID = {
    "int16_scaled": int16_scaled,
    "singleton_4d": lambda p: write_scan(p, np.asarray(nib.load(p).dataobj)[..., None]),
    "uint8": lambda p: write_scan(p, (np.asarray(nib.load(p).dataobj) % 255).astype(np.uint8)),
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_unusual_but_valid_scans_are_predicted(kind, lesion_model, tmp_path, capsys):
    case = write_case(tmp_path / "cohort" / "case_0")
    VALID[kind](case / "T1.nii.gz")
    validate_cases(discover_cases(case.parent))
    code, stdout, _ = predict(case.parent, tmp_path / "OUT", lesion_model, capsys)
    assert code == 0, stdout
    assert nib.load(tmp_path / "OUT" / "case_0" / "lesion.nii.gz").shape == CASE_SHAPE


def no_cases(tmp_path: Path, kind: str) -> tuple[Path, str]:
    cohort = tmp_path / "cohort"
    write_case(cohort / "case_0")
    if kind == "empty_folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty", f"Input {tmp_path / 'empty'} holds no case"
    if kind == "empty_case":
        (cohort / "case_1").mkdir()
        return cohort, f"file {cohort / 'case_1' / 'T1.nii.gz'}: channel 'T1' file is missing"
    if kind == "missing_column":
        path = tmp_path / "cases.csv"
        path.write_text(f"case_id,T1\ncase_0,{cohort / 'case_0' / 'T1.nii.gz'}\n")
        return path, "manifest lacks column(s) ['b1000']"
    path = manifest(tmp_path / "cases.csv", [("case_0", cohort / "case_0"), ("x", tmp_path)])
    return path, f"file {tmp_path / 'T1.nii.gz'}: channel 'T1' file is missing"


@pytest.mark.parametrize("kind", ["empty_folder", "empty_case", "missing_column", "missing_file"])
def test_an_input_without_cases_is_refused(kind, lesion_model, tmp_path, capsys):
    source, problem = no_cases(tmp_path, kind)
    before = tree_digest(tmp_path)
    code, _, err = predict(source, tmp_path / "OUT", lesion_model, capsys)
    assert code == 2 and problem in err
    assert tree_digest(tmp_path) == before


def test_a_symlinked_case_is_predicted_and_left_alone(lesion_model, tmp_path, capsys):
    real = write_case(tmp_path / "storage" / "case_0")
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "case_0").symlink_to(real, target_is_directory=True)
    before = tree_digest(real)
    code, stdout, _ = predict(tmp_path / "cohort", tmp_path / "OUT", lesion_model, capsys)
    assert code == 0, stdout
    assert (tmp_path / "OUT" / "case_0" / "lesion.nii.gz").is_file()
    assert tree_digest(real) == before
    code, _, err = predict(tmp_path / "cohort", real / "predictions", lesion_model, capsys)
    assert code == 2 and "lies inside the input folder" in err


@pytest.mark.parametrize("dialect", ["bom", "semicolon"])
def test_manifest_dialects_are_read(dialect, lesion_model, tmp_path, capsys):
    case = write_case(tmp_path / "cohort" / "case_0")
    path = manifest(
        tmp_path / "cases.csv",
        [("first", case)],
        sep=";" if dialect == "semicolon" else ",",
        bom=dialect == "bom",
    )
    code, stdout, _ = predict(path, tmp_path / "OUT", lesion_model, capsys)
    assert code == 0, stdout
    assert (tmp_path / "OUT" / "first" / "lesion.nii.gz").is_file()


# ---------------------------------------------------------------- sap evaluate inputs


def evaluate(pred: Path, ref: Path, out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    args = ["evaluate", "--pred", pred, "--ref", ref, "--out", out, "--bootstrap", "0"]
    return run_sap([*args, "--no-plots", "--no-progress", *extra], capsys)


def test_evaluating_references_against_themselves_is_refused(cohort, tmp_path, capsys):
    before = tree_digest(cohort)
    code, _, err = evaluate(cohort, cohort, tmp_path / "evaluation", capsys)
    assert code == 1
    assert f"is the reference file itself (e.g. {cohort / 'case_0' / 'lesion.nii.gz'})" in err
    assert not (tmp_path / "evaluation").exists()
    assert tree_digest(cohort) == before


def test_predictions_beside_scans_are_flagged(cohort, tmp_path, capsys):
    references = tmp_path / "references"
    for case in ("case_0", "case_1"):
        (references / case).mkdir(parents=True)
        shutil.copy(cohort / case / "lesion.nii.gz", references / case / "lesion.nii.gz")
    code, _, err = evaluate(cohort, references, tmp_path / "evaluation", capsys)
    assert code == 0
    assert "2 prediction(s) lie next to input scans (case_0, case_1" in err
    assert f"is {cohort} a cohort of references rather than predictions?" in err


def quantised(probability: np.ndarray, path: Path, slope: float | None) -> None:
    image = nib.Nifti1Image(np.rint(probability * 255).astype(np.uint8), np.asarray(CASE_AFFINE))
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def test_quantised_probability_maps_are_read_as_probabilities(cohort, tmp_path, capsys):
    for case in ("case_0", "case_1"):
        reference = np.asarray(nib.load(cohort / case / "lesion.nii.gz").dataobj)
        path = tmp_path / "pred" / case / "lesion_probability.nii.gz"
        quantised(reference * 0.8, path, 1 / 255)
    code, stdout, _ = evaluate(tmp_path / "pred", cohort, tmp_path / "scored", capsys, "--prob")
    assert code == 0 and "| sensitivity, all lesions | 1.00 |" in stdout
    for case in ("case_0", "case_1"):  # the same maps offered as binary masks
        probability = tmp_path / "pred" / case / "lesion_probability.nii.gz"
        shutil.copy(probability, tmp_path / "pred" / case / "lesion.nii.gz")
    code, _, err = evaluate(tmp_path / "pred", cohort, tmp_path / "binary", capsys)
    assert code == 1 and "looks like a probability map" in err


@pytest.mark.parametrize("kind", ["uint8_unscaled", "nan"])
def test_probability_maps_outside_zero_one_are_refused(kind, cohort, tmp_path, capsys):
    for case in ("case_0", "case_1"):
        reference = np.asarray(nib.load(cohort / case / "lesion.nii.gz").dataobj)
        path = tmp_path / "pred" / case / "lesion_probability.nii.gz"
        if kind == "uint8_unscaled":
            quantised(reference * 1.0, path, None)
        else:
            probability = reference.astype(np.float32)
            probability[0, 0, 0] = np.nan
            write_scan(path, probability)
    code, _, err = evaluate(tmp_path / "pred", cohort, tmp_path / "scored", capsys, "--prob")
    assert code == 1
    assert str(tmp_path / "pred" / "case_0" / "lesion_probability.nii.gz") in err
    expected = "values in [0, 255], not [0, 1]" if kind == "uint8_unscaled" else "not [0, 1]"
    assert expected in err
    assert not (tmp_path / "scored").exists()
