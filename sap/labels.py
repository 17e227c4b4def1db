"""Names shared by every part of `sap`: input channels and label maps.

Why a module of its own: the same names travel in phantom files, data validation, model
configs (`config.json`), reports and metrics. Keeping them in one place means a model's
recipe, a data folder and a report always speak about the same thing.
"""

from __future__ import annotations

#: Input channels of the SAP models, in the order they are stacked into the network input.
#: ``T1`` is the T1-weighted image, ``b1000`` the diffusion-weighted image at b = 1000 s/mm².
CHANNELS: tuple[str, ...] = ("T1", "b1000")

#: The 10 classes of the skeleton (anatomy) model: background plus 9 bone regions.
#: Paired bones (femurs, humeri, scapulae, clavicles) share one label each, as in the paper.
SKELETON_LABELS: tuple[str, ...] = (
    "background",
    "cervical_spine",
    "thoracic_spine",
    "lumbar_spine",
    "pelvis",
    "femurs",
    "humeri",
    "scapulae",
    "clavicles",
    "sternum",
)

#: The 2 classes of the lesion (bone metastasis) model.
LESION_LABELS: tuple[str, ...] = ("background", "lesion")

#: File names of the standard case-folder layout (see :mod:`sap.data.cases`).
DEFAULT_CHANNEL_FILES: dict[str, str] = {"T1": "T1.nii.gz", "b1000": "b1000.nii.gz"}
DEFAULT_SKELETON_FILE = "skeleton.nii.gz"
DEFAULT_LESION_FILE = "lesion.nii.gz"

#: The one task -> class names mapping (data validation, model recipes, prediction files).
TASK_LABELS: dict[str, tuple[str, ...]] = {"skeleton": SKELETON_LABELS, "lesion": LESION_LABELS}

#: The one task -> label-map file name mapping of the case-folder layout; predictions are
#: written under the same names so a prediction folder reads like a reference folder.
TASK_LABEL_FILES: dict[str, str] = {
    "skeleton": DEFAULT_SKELETON_FILE,
    "lesion": DEFAULT_LESION_FILE,
}

#: The lesion probability map a prediction folder holds beside ``lesion.nii.gz``.
LESION_PROBABILITY_FILE = "lesion_probability.nii.gz"

__all__ = [
    "CHANNELS",
    "DEFAULT_CHANNEL_FILES",
    "DEFAULT_LESION_FILE",
    "DEFAULT_SKELETON_FILE",
    "LESION_PROBABILITY_FILE",
    "LESION_LABELS",
    "SKELETON_LABELS",
    "TASK_LABELS",
    "TASK_LABEL_FILES",
]
