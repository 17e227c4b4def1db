"""How to cite SAP: the journal article and its preprint, as one BibTeX text.

The single source of the citation: every model card (``sap.zoo``), the model zoo's README and
the README of the repository show exactly this text (tests keep the READMEs in sync).
"""

from __future__ import annotations

#: BibTeX of the SAP journal article (J Bone Oncol 2026) and its arXiv preprint.
CITATION = r"""@article{wuts2026sap,
  title   = {Clinically aligned whole-body {MRI} segmentation of skeletal metastases via
             Supervised Anatomical Pretraining},
  author  = {Wuts, Joris and Ceranka, Jakub and Michoux, Nicolas and Lecouvet, Fr{\'e}d{\'e}ric
             and Vandemeulebroucke, Jef},
  journal = {Journal of Bone Oncology},
  volume  = {57},
  pages   = {100745},
  year    = {2026}
}

@misc{wuts2025sap,
  title         = {Learning from Anatomy: Supervised Anatomical Pretraining ({SAP}) for Improved
                   Metastatic Bone Disease Segmentation in Whole-Body {MRI}},
  author        = {Wuts, Joris and Ceranka, Jakub and Michoux, Nicolas and Lecouvet, Fr{\'e}d{\'e}ric
                   and Vandemeulebroucke, Jef},
  year          = {2025},
  eprint        = {2506.19590},
  archivePrefix = {arXiv}
}"""


def citation_markdown() -> str:
    """The citation as a Markdown BibTeX code block (what the READMEs and cards show)."""
    return f"```bibtex\n{CITATION}\n```\n"


__all__ = ["CITATION", "citation_markdown"]
