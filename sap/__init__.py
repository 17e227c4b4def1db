"""sap: Supervised Anatomical Pretraining for bone-metastasis segmentation in whole-body MRI."""

from __future__ import annotations

__version__ = "0.1.0"
