"""``sap fit|validate|test``: LightningCLI over the SAP tasks and data modules."""

from __future__ import annotations

from collections.abc import Sequence

from sap.configs import resolve_config_argument


def run_lightning_cli(argv: Sequence[str]) -> int:
    """Run LightningCLI with ``argv`` (sub-command first), resolving packaged config names.

    The task (``model``) and data module (``data``) are given as ``class_path`` +
    ``init_args`` in the YAML, so one command trains any stage: skeleton pretraining, lesion
    fine-tuning or the SSL baseline (which is no segmentation task, hence the base class).
    """
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    import sap.tasks  # noqa: F401  (imported subclasses are what short class names resolve to)

    args = resolve_config_argument(list(argv))
    LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": f"sap {args[0]}" if args else "sap"},
    )
    return 0
