"""Text views of the zoo catalogue: ``model_zoo/README.md`` and the ``sap zoo list`` table.

Both are generated from the catalogue entries, so they cannot disagree with them; a test keeps
the committed README in sync.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sap.citation import citation_markdown
from sap.io import write_text_atomic
from sap.zoo.catalogue import ModelZoo, ZooEntry

_README_HEAD = """# The sap model zoo

<!-- Generated from the YAML entries in this folder by `sap zoo list --write-readme model_zoo/README.md`.
     Do not edit by hand: tests/zoo/test_catalogue.py checks it is up to date. -->

One YAML entry per published model (`model_zoo/<name>.yaml`): where the weights are (bundled
in the package, or a Hub repository pinned to a commit), the sha256 of `model.safetensors`
that `load_pretrained` checks, task, backbone, channels, labels, metrics and licence.

```python
from sap import list_models, load_pretrained

list_models()                                    # the table below, from Python
model = load_pretrained("sap-skeleton-phantom")  # bundled: works offline
lesion = load_pretrained("sap-skeleton-phantom", task="lesion", num_classes=2)  # SAP transfer
model = load_pretrained("hf://owner/repo@<commit>")  # any repo written by `sap zoo push`
```

Hub models are fetched with `huggingface_hub` into the standard Hugging Face cache; the code
that the test suite runs against a local Hub look-alike is the code that talks to
huggingface.co (`HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_HUB_CACHE` are honoured).

Models marked *synthetic* were trained on generated phantoms: they exist for demos, tests and
tutorials, and say so in their model card. No model here is a medical device.

"""

_README_TAIL = """
Export your own: `sap zoo export CKPT OUT` (Lightning checkpoint -> export folder),
`sap zoo push OUT owner/repo` (or `model.push_to_hub("owner/repo")` on a loaded model), then
add an entry here with the pinned commit and sha256.
Reference checkpoints of the SAP authors' MONAI scripts: `sap zoo import-reference CKPT OUT --task skeleton`.

## Citation

Every model card carries the same citation:

""" + citation_markdown()

_NO_MODELS = (
    "No models yet: `python model_zoo/train_phantom_models.py` makes the bundled demo models.\n"
)


def render_zoo_table(zoo: Iterable[ZooEntry]) -> str:
    """The Markdown table of ``model_zoo/README.md``: one row per entry."""
    lines = [
        "| name | task | backbone | channels | classes | parameters | size (MB) | metrics | source | data |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in zoo:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in entry.metrics.items()) or "—"
        params = f"{entry.num_parameters:,}" if entry.num_parameters else "—"
        size = f"{entry.size_bytes / 1e6:.2f}" if entry.size_bytes else "—"
        source = (
            "bundled"
            if entry.bundled
            else f"[{entry.hub_repo}](https://huggingface.co/{entry.hub_repo})"
        )
        lines.append(
            f"| `{entry.name}` | {entry.task} | `{entry.backbone}` | {', '.join(entry.channels)} | "
            f"{len(entry.labels)} | {params} | {size} | {metrics} | {source} | "
            f"{'synthetic' if entry.synthetic else 'patients'} |"
        )
    return "\n".join(lines) + "\n"


def render_zoo_readme(zoo: ModelZoo) -> str:
    """The complete ``model_zoo/README.md``: fixed prose around :func:`render_zoo_table`."""
    table = render_zoo_table(zoo) if len(zoo) else _NO_MODELS
    details = []
    for entry in zoo:
        line = f"- `{entry.name}`: {entry.summary}"
        if entry.training.get("command"):
            line += f" Made by `{entry.training['command']}`"
            runtime = entry.training.get("runtime")
            line += f" ({runtime})." if runtime else "."
        details.append(line)
    return (
        _README_HEAD
        + "## Models\n\n"
        + table
        + "\n"
        + "\n".join(details)
        + ("\n" if details else "")
        + _README_TAIL
    )


def write_zoo_readme(path: str | Path, folder: str | Path | None = None) -> ModelZoo:
    """Write the README of the entries in ``folder`` (default: the catalogue directory) to ``path``.

    Only the YAML entries count here, not bundled folders without one: the README documents
    the catalogue as committed.
    """
    zoo = ModelZoo.from_directory(folder or ModelZoo.catalogue_directory())
    write_text_atomic(path, render_zoo_readme(zoo))
    return zoo


def format_zoo_listing(entries: Iterable[ZooEntry]) -> str:
    """A plain-text table (name, task, backbone, size, source) for a terminal."""
    rows = [("name", "task", "backbone", "size", "source")]
    for entry in entries:
        size = f"{entry.size_bytes / 1e6:.2f} MB" if entry.size_bytes else "?"
        rows.append((entry.name, entry.task, entry.backbone, size, entry.source))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


__all__ = ["format_zoo_listing", "render_zoo_readme", "render_zoo_table", "write_zoo_readme"]
