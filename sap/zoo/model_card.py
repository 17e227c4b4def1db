"""Model cards: the ``README.md`` that lets an exported model explain itself.

Generated from :class:`sap.zoo.metadata.ModelConfig` alone, so the card can never disagree with
the weights it describes: what the model is, how its input must be prepared, intended use and
limits (research use, not a medical device), training data, metrics, how to load it, and how to
cite SAP. The YAML front matter is the Hub's model-card metadata, written and checked by
``huggingface_hub`` itself (``ModelCardData``, ``ModelCard``): licence, ``library_name``, tags,
``pipeline_tag``, ``base_model`` (the fine-tune source), ``datasets`` and a ``model-index``
with one ``EvalResult`` per recorded metric, so the Hub shows them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sap.citation import citation_markdown
from sap.zoo.metadata import ModelConfig

if TYPE_CHECKING:
    from huggingface_hub import ModelCardData

#: The Hub task of every sap model (3D semantic segmentation).
PIPELINE_TAG = "image-segmentation"

_TASK_TEXT = {
    "skeleton": (
        "segments the skeleton into {n} classes ({labels}) on whole-body MRI. In SAP it is the "
        "anatomical pretraining stage: its encoder and decoder initialise a lesion model."
    ),
    "lesion": (
        "segments bone metastases (classes: {labels}) on whole-body MRI. Lesions are the 3D "
        "connected components of the thresholded lesion probability."
    ),
}


def card_data(config: ModelConfig) -> ModelCardData:
    """Hub model-card metadata (the README's YAML front matter) as ``huggingface_hub`` models it."""
    from huggingface_hub import EvalResult, ModelCardData

    tags = ["sap", "medical-imaging", "mri", "whole-body-mri", "3d", "segmentation", "pytorch"]
    tags.append("bone-metastasis" if config.task == "lesion" else "skeleton-segmentation")
    if config.training_data.synthetic:
        tags.append("synthetic-data")
    dataset = config.training_data.dataset_name
    evaluated_on = config.metrics_dataset or dataset or "custom"
    task_name = (
        "bone metastasis segmentation" if config.task == "lesion" else "skeleton segmentation"
    )
    results = [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name=task_name,
            dataset_type=evaluated_on,
            dataset_name=evaluated_on,
            metric_type=key,
            metric_name=key.replace("_", " "),
            metric_value=float(value),
        )
        for key, value in config.metrics.items()
    ]
    return ModelCardData(
        base_model=config.base_model or None,
        datasets=[dataset] if dataset else None,
        eval_results=results or None,
        library_name="sap",
        license=config.license,
        model_name=model_title(config),
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
    )


def card_metadata(config: ModelConfig) -> dict[str, object]:
    """The card's YAML front matter as a plain dict (``model-index`` included)."""
    return card_data(config).to_dict()


def model_title(config: ModelConfig) -> str:
    """The model's name, or a description of it when it has none."""
    return config.name or f"sap {config.recipe.task} model ({config.recipe.backbone})"


def render_model_card(config: ModelConfig, load_id: str | None = None) -> str:
    """The model card (Markdown with YAML front matter) of an exported model.

    The text goes through ``huggingface_hub.ModelCard``, which parses and checks the front
    matter as the Hub will.

    Args:
        config: the model's config; every statement in the card comes from it.
        load_id: what to pass to :func:`sap.load_pretrained` in the "How to load" example,
            e.g. ``"hf://owner/repo@<commit>"`` or a zoo name. Defaults to the zoo name, or a
            local folder path when the model has none.
    """
    from huggingface_hub import ModelCard

    load_id = load_id or config.name or "path/to/exported_folder"
    sections = (
        _introduction(config),
        _model_table(config),
        _intended_use(config),
        _training_data(config),
        _metrics(config),
        _how_to_load(config, load_id),
        _provenance(config),
        ["## Citation", "", _citation(config).rstrip("\n"), ""],
    )
    body = "\n".join(line for section in sections for line in section)
    card = ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n\n{body}")
    return str(card)


def _citation(config: ModelConfig) -> str:
    text = config.citation.strip()
    return f"```bibtex\n{text}\n```\n" if text else citation_markdown()


def _introduction(config: ModelConfig) -> list[str]:
    recipe = config.recipe
    lines = [f"# {model_title(config)}", ""]
    if config.description:
        lines += [config.description.strip(), ""]
    what = _TASK_TEXT.get(recipe.task, "segments {labels}.").format(
        n=len(recipe.labels), labels=", ".join(recipe.labels)
    )
    lines += [
        f"A `{recipe.backbone}` network that {what} Exported by the `sap` library "
        "(Supervised Anatomical Pretraining for whole-body MRI).",
        "",
        "> **Research use only.** This model is not a medical device. It has not been cleared or "
        "approved for clinical use and must not be used for diagnosis or treatment decisions.",
        "",
    ]
    if config.training_data.synthetic:
        lines += [
            "> **Trained on synthetic data.** The training scans are generated phantoms, not patient "
            "images. This model exists for demos, tests and tutorials; its output on real scans "
            "means nothing.",
            "",
        ]
    return lines


def _model_table(config: ModelConfig) -> list[str]:
    recipe = config.recipe
    spacing = (
        "native (no resampling)"
        if recipe.spacing_mm is None
        else " × ".join(f"{s:g}" for s in recipe.spacing_mm)
    )
    rows = [
        ("task", recipe.task),
        ("backbone", f"`{recipe.backbone}` {_inline_json(recipe.backbone_kwargs)}"),
        ("input channels (in order)", ", ".join(f"`{c}`" for c in recipe.channels)),
        (
            "output labels (index: name)",
            ", ".join(f"{i}: {n}" for i, n in enumerate(recipe.labels)),
        ),
        ("patch size (voxels)", " × ".join(str(s) for s in recipe.patch_size)),
        ("voxel spacing (mm)", spacing),
        ("orientation", recipe.orientation),
        ("intensity normalisation", _inline_json(recipe.normalisation)),
    ]
    if config.base_model:
        rows.append(("fine-tuned from", f"`{config.base_model}`"))
    weights = config.weights
    if weights is not None:
        rows += [
            ("parameters", f"{weights.num_parameters:,}"),
            ("weights", f"`{weights.file}` ({weights.size_bytes / 1e6:.2f} MB, {weights.dtype})"),
            ("sha256", f"`{weights.sha256}`"),
        ]
    rows.append(("sap version", config.sap_version))
    return ["## Model", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]


def _intended_use(config: ModelConfig) -> list[str]:
    channels = config.recipe.channels
    return [
        "## Intended use and limits",
        "",
        "- Research on bone-metastasis segmentation and anatomical pretraining in whole-body MRI.",
        f"- Input: {len(channels)} co-registered channels ({', '.join(channels)}), "
        "prepared exactly as the recipe above says (orientation, spacing, normalisation); "
        "`sap predict` does this for you.",
        "- Not validated on scanners, protocols or populations other than its training data.",
        "- Not a medical device; outputs need expert review.",
        "",
    ]


def _training_data(config: ModelConfig) -> list[str]:
    data = config.training_data
    lines = ["## Training data", "", data.description.strip() or "Not described."]
    if data.num_cases is not None:
        lines += ["", f"Training cases: {data.num_cases}."]
    if data.dataset_name:
        lines += ["", f"Data set: `{data.dataset_name}`."]
    return [*lines, ""]


def _metrics(config: ModelConfig) -> list[str]:
    lines = ["## Metrics", ""]
    if not config.metrics:
        return [*lines, "No metrics recorded.", ""]
    if config.metrics_description:
        lines += [config.metrics_description.strip(), ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4g} |" for key, value in config.metrics.items()]
    return [*lines, ""]


def _how_to_load(config: ModelConfig, load_id: str) -> list[str]:
    lines = [
        "## How to load",
        "",
        "```python",
        "from sap import load_pretrained",
        "",
        f'model = load_pretrained("{load_id}")',
    ]
    if config.recipe.task == "skeleton":
        lines += [
            "# SAP transfer: keep encoder and decoder, put on a fresh 2-class lesion head",
            f'lesion_model = load_pretrained("{load_id}", task="lesion", num_classes=2)',
        ]
    return [*lines, "```", ""]


def _provenance(config: ModelConfig) -> list[str]:
    if not config.provenance:
        return []
    return ["## Provenance", "", "```json", json.dumps(config.provenance, indent=2), "```", ""]


def _inline_json(value: object) -> str:
    return f"`{json.dumps(value, sort_keys=True)}`"


__all__ = ["PIPELINE_TAG", "card_data", "card_metadata", "model_title", "render_model_card"]
