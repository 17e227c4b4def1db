"""Resuming a run: find its last checkpoint, and check it fits the model before Lightning loads it.

``sap fit ... --ckpt_path last`` continues the newest ``last*.ckpt`` under the run's folders
(:func:`find_last_checkpoint`). Lightning alone looks only in the new run's own checkpoint
folder (a fresh ``version_N`` for the CSV and TensorBoard loggers), finds nothing there and
starts from scratch with a warning; here a missing checkpoint is an error. Before loading,
:func:`check_checkpoint_fits` compares the checkpoint's recipe with the model about to
receive it, so a different backbone, channel list or patch size is one clear message
instead of a ``load_state_dict`` traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sap.errors import ConfigError, MissingPathError
from sap.recipe import ModelRecipe
from sap.tasks.checks import plain
from sap.zoo.checkpoint import TaskCheckpoint, read_checkpoint

#: What ``--ckpt_path`` takes to mean "the newest last checkpoint of this run".
LAST = "last"


#: Where Lightning puts checkpoints below a root: ``<root>/checkpoints`` (no logger),
#: ``<save_dir>/<name>/<version>/checkpoints`` (loggers), or the root itself (a ``dirpath``).
LAST_PATTERNS: tuple[str, ...] = (
    "last*.ckpt",
    "checkpoints/last*.ckpt",
    "*/checkpoints/last*.ckpt",
    "*/*/checkpoints/last*.ckpt",
    "*/*/*/checkpoints/last*.ckpt",
)


def find_last_checkpoint(roots: Iterable[str | Path]) -> Path | None:
    """The most recently written ``last*.ckpt`` where Lightning puts checkpoints below ``roots``."""
    found = {
        path
        for root in roots
        if Path(root).is_dir()
        for pattern in LAST_PATTERNS
        for path in Path(root).glob(pattern)
        if path.is_file()
    }
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_checkpoint_path(
    ckpt_path: str | Path | None, roots: Iterable[str | Path]
) -> Path | None:
    """``ckpt_path`` as a file: ``"last"`` is looked up under ``roots``; others must exist.

    Raises:
        MissingPathError: ``"last"`` with no last checkpoint under ``roots``, or a path that
            does not exist.
    """
    if ckpt_path is None:
        return None
    if str(ckpt_path) == LAST:
        roots = [Path(r) for r in roots]
        found = find_last_checkpoint(roots)
        if found is None:
            searched = ", ".join(str(r) for r in roots) or "(no folder)"
            raise MissingPathError(
                f"--ckpt_path last: no last.ckpt under {searched}, so there is nothing to "
                "resume. Give the checkpoint's path, use the same --trainer.default_root_dir "
                "as the run to resume, or start without --ckpt_path."
            )
        return found
    path = Path(ckpt_path)
    if not path.is_file():
        raise MissingPathError(f"--ckpt_path {path} does not exist.")
    return path


def check_checkpoint_fits(path: str | Path, recipe: ModelRecipe) -> TaskCheckpoint:
    """Read the checkpoint (``weights_only=True``, mapped) and refuse one made for another model.

    Raises:
        CheckpointError: not a ``sap`` task checkpoint (a text file, a plain state dict, ...).
        ConfigError: its recipe differs from ``recipe`` (task, backbone, channels, labels,
            patch size); the message lists each difference.
    """
    checkpoint = read_checkpoint(path, mmap=True)
    saved = checkpoint.recipe
    fields = ("task", "backbone", "backbone_kwargs", "channels", "labels", "patch_size")
    differences = [
        f"{name}: checkpoint {plain(getattr(saved, name))}, model {plain(getattr(recipe, name))}"
        for name in fields
        if plain(getattr(saved, name)) != plain(getattr(recipe, name))
    ]
    if differences:
        raise ConfigError(
            f"{path} was written by a different model than this run builds ("
            + "; ".join(differences)
            + "). Use the config the checkpoint was trained with, or another checkpoint."
        )
    return checkpoint


__all__ = ["LAST", "check_checkpoint_fits", "find_last_checkpoint", "resolve_checkpoint_path"]
