"""Builders for the fault catalogue (tests/faults/): fingerprints of folders on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(path: str | Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (``"<empty dir>"`` for empty folders).

    Compare the digest of an input tree before and after a command to prove nothing changed.
    """
    root = Path(path)
    digest: dict[str, str] = {}
    for item in sorted(root.rglob("*")):
        key = item.relative_to(root).as_posix()
        if item.is_file():
            digest[key] = hashlib.sha256(item.read_bytes()).hexdigest()
        elif item.is_dir() and not any(item.iterdir()):
            digest[key] = "<empty dir>"
    return digest


# ---------------------------------------------------------------- builders of the io faults

#: Grid of the tiny cases: 2 x 2 x 2.5 mm voxels.
CASE_SHAPE = (14, 12, 10)
CASE_AFFINE = ((2.0, 0, 0, 0), (0, 2.0, 0, 0), (0, 0, 2.5, 0), (0, 0, 0, 1))


def write_scan(path: Path, data, affine=CASE_AFFINE) -> Path:
    """Write one NIfTI file plainly (tests damage these files on purpose)."""
    import nibabel as nib
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64)), str(path))
    return path


def write_case(folder: Path, seed: int = 0, lesion: bool = True, affine=CASE_AFFINE) -> Path:
    """A tiny case folder: T1, b1000 (same grid) and a reference lesion map."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t1 = rng.random(CASE_SHAPE, dtype=np.float32) * 1000
    write_scan(folder / "T1.nii.gz", t1, affine)
    write_scan(folder / "b1000.nii.gz", t1[::-1].copy(), affine)
    if lesion:
        reference = np.zeros(CASE_SHAPE, np.uint8)
        reference[3:6, 3:6, 3:6] = 1
        write_scan(folder / "lesion.nii.gz", reference, affine)
    return folder


def write_cohort(root: Path, n: int = 2) -> Path:
    """``root/case_0 .. case_{n-1}``, each from :func:`write_case`."""
    for index in range(n):
        write_case(root / f"case_{index}", seed=index)
    return root


def export_lesion_model(folder: Path) -> Path:
    """A tiny untrained two-class lesion model as a zoo export folder."""
    from sap.zoo import ModelConfig, save_pretrained
    from tests.helpers.inference import tiny_model

    model = tiny_model("lesion")
    return save_pretrained(model, folder, ModelConfig(recipe=model.recipe))


def run_sap(argv: list[str], capsys) -> tuple[int, str, str]:
    """``sap ARGV`` in this process: ``(exit status, stdout, stderr)``; argparse exits count."""
    from sap.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def manifest(path: Path, rows: list[tuple[str, Path]], sep: str = ",", bom: bool = False) -> Path:
    """A CSV manifest with ``case_id,T1,b1000`` rows; ``rows`` gives (case id, case folder)."""
    lines = [sep.join(("case_id", "T1", "b1000"))]
    lines += [sep.join((cid, str(f / "T1.nii.gz"), str(f / "b1000.nii.gz"))) for cid, f in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def lesion_checkpoint(path: Path) -> Path:
    """A Lightning-style checkpoint of an untrained tiny lesion task, as ``sap fit`` saves it."""
    import torch

    from sap.tasks import LesionFinetuning

    torch.manual_seed(0)
    module = LesionFinetuning(
        backbone="tiny_unet",
        backbone_kwargs={"base_channels": 4, "depth": 2},
        patch_size=(16, 16, 16),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "sap_recipe": module.recipe().to_dict(),
        },
        path,
    )
    return path


#: ``python -c`` program: ``sap ARGS`` with every prediction slowed by 1.5 s, so that a
#: signal sent while a case is being written lands mid-case in a real process.
SLOW_SAP = (
    "import sys, time\n"
    "import sap.inference.predictor as predictor\n"
    "predict = predictor.Predictor.predict\n"
    "def slow(self, *args, **kwargs):\n"
    "    time.sleep(1.5)\n"
    "    return predict(self, *args, **kwargs)\n"
    "predictor.Predictor.predict = slow\n"
    "from sap.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)
