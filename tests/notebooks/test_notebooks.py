"""Every notebook in ``notebooks/`` runs top to bottom in a fresh kernel and computes real values.

Each test executes one notebook with nbclient (kernel ``python3`` of this environment) in a
temporary folder, with ``TMPDIR`` pointing into it, so nothing is written elsewhere. A probe
cell appended to the notebook prints the values the test checks as JSON; the notebook file
itself is not changed. Output must stay readable: no ipywidgets warning, no progress bar
printed line by line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.training import REPO_ROOT, subprocess_env

NOTEBOOKS = REPO_ROOT / "notebooks"
#: A notebook's text output (stdout + stderr of all cells) stays under this many lines.
MAX_OUTPUT_LINES = 120


def _execute(name: str, probe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``notebooks/<name>.ipynb`` plus ``probe`` (printing JSON); the values and the notebook."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail("no 'python3' Jupyter kernel: run `python -m ipykernel install --sys-prefix`")
    work = tmp_path / "work"
    work.mkdir()
    for variable, value in subprocess_env().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TMPDIR", str(work))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    for variable in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "stored with outputs"
    notebook.cells.append(nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({probe}))"))
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()

    streams = [
        output["text"]
        for cell in notebook.cells[:-1]
        for output in cell.get("outputs", [])
        if output["output_type"] == "stream"
    ]
    text = "".join(streams)
    assert "IProgress not found" not in text
    assert len(text.splitlines()) < MAX_OUTPUT_LINES, text[-3000:]
    assert "\r" not in text, "a progress bar printed as text"
    (probe_output,) = notebook.cells[-1]["outputs"]
    return json.loads(probe_output["text"]), notebook


def test_notebooks_are_stored_without_outputs() -> None:
    import nbformat

    names = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01_quickstart",
        "02_finetune_your_lesions",
        "03_evaluate_and_compare",
        "04_pretrain_and_share",
    ]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), name
        assert notebook.metadata["kernelspec"]["name"] == "python3", name


def _count_images(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


@pytest.mark.slow
def test_01_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = (
        "{'n_lesions': scores['n_lesions'], 'sensitivity': scores['sensitivity'], "
        "'rows': len(table), 'reported': report.lesion_count, 'work': str(work)}"
    )
    values, notebook = _execute("01_quickstart", probe, tmp_path, monkeypatch)
    assert values["n_lesions"] > 0
    assert 0.0 < values["sensitivity"] <= 1.0, "the bundled model finds some phantom lesions"
    assert values["rows"] == values["reported"] > 0
    assert Path(values["work"]).parent == tmp_path / "work"
    assert _count_images(notebook) >= 1, "the overview picture is shown"


@pytest.mark.slow
def test_02_finetune_your_lesions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = (
        "{'loaded': sap_model.transfer_record['loaded'], "
        "'lrs': [g['initial_lr'] for g in sap_trainer.optimizers[0].param_groups], "
        "'sensitivity': comparison.loc['sensitivity'].tolist(), "
        "'cases': evaluations['sap'].exams.index.tolist(), 'same_weights': same_weights, "
        "'loaded_task': loaded.recipe.task, 'work': str(work)}"
    )
    values, _ = _execute("02_finetune_your_lesions", probe, tmp_path, monkeypatch)
    assert values["loaded"] > 0, "the skeleton weights were transferred"
    assert min(values["lrs"]) < max(values["lrs"]), "the encoder learns slower (SAP)"
    assert all(0.0 <= s <= 1.0 for s in values["sensitivity"])
    assert values["cases"] == ["metastatic_000", "metastatic_001"]
    assert values["same_weights"] and values["loaded_task"] == "lesion", "the export loads back"
    assert Path(values["work"]).parent == tmp_path / "work"


@pytest.mark.slow
def test_03_evaluate_and_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = (
        "{'good_sensitivity': good.exams['sensitivity'].tolist(), "
        "'worse_fn': worse.exams['fn'].tolist(), 'worse_fp': worse.exams['fp'].tolist(), "
        "'froc_xlabel': froc_figure.axes[0].get_xlabel(), "
        "'froc_auc': {n: e.summary['froc']['auc_normalised'] for n, e in evaluations.items()}, "
        "'p_dice': comparison.loc['mean_lesion_dice', 'p_worse'], 'p_by_hand': p_dice, "
        "'cli_status': done.returncode, 'cli_output': done.stdout, "
        "'blob_sensitivity': blob.exams['sensitivity'].tolist(), "
        "'blob_degenerate': blob.exams['degenerate'].tolist(), "
        "'good_degenerate': good.summary['degenerate'], 'warned': len(caught), 'work': str(work)}"
    )
    values, notebook = _execute("03_evaluate_and_compare", probe, tmp_path, monkeypatch)
    assert values["good_sensitivity"] == [1.0] * 6, "every lesion is above 0.5 in 'good'"
    assert all(fn >= 1.0 for fn in values["worse_fn"]), "the smallest lesion of each case is missed"
    assert values["worse_fp"] == [1.0] * 6, "the confident cube is a false positive"
    assert values["froc_xlabel"] == "false positives per exam"
    assert 0.0 <= values["froc_auc"]["worse"] < values["froc_auc"]["good"] <= 1.0
    assert 0.0 <= values["p_dice"] <= 1.0
    assert values["p_dice"] == pytest.approx(values["p_by_hand"])
    assert values["p_dice"] < 0.05, "six paired patients, all better in 'good'"
    assert values["cli_status"] == 0 and "p worse vs good" in values["cli_output"]
    assert values["blob_sensitivity"] == [1.0] * 6, "the blob 'detects' everything"
    assert values["blob_degenerate"] == [1.0] * 6 and values["warned"] >= 6
    assert not values["good_degenerate"]
    assert _count_images(notebook) >= 5, "FROC, volume and case figures are shown"


@pytest.mark.slow
def test_04_pretrain_and_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = (
        "{'checkpoint': str(checkpoint), 'trained': str(config['recipe']['task']), "
        "'uri': result.uri, 'task': pulled.recipe.task, 'foreground': scores['foreground'], "
        "'saved': [str(p) for p in saved], 'shape': list(bones.shape), "
        "'case_shape': list(nib.load(case / 'T1.nii.gz').shape), "
        "'requests': len(hub.requests), 'again': again.recipe.task, 'work': str(work)}"
    )
    values, notebook = _execute("04_pretrain_and_share", probe, tmp_path, monkeypatch)
    checkpoint = Path(values["checkpoint"])
    assert checkpoint.name == "last.ckpt" and "skeleton-run" in checkpoint.parts, "sap fit wrote it"
    assert values["trained"] == "skeleton"
    assert values["uri"].startswith("hf://your-name/sap-skeleton-demo@")
    assert values["task"] == values["again"] == "skeleton"
    assert 0.0 <= values["foreground"] <= 1.0
    (written,) = [Path(p) for p in values["saved"]]
    assert written.name == "skeleton.nii.gz" and written.is_file()
    assert values["shape"] == values["case_shape"], "the prediction is on the case's grid"
    assert values["requests"] > 0, "the Hub was used, not a local shortcut"
    assert _count_images(notebook) >= 1, "the predicted bones are shown"
