"""Lightning's cloud-logging advertisement and its own torch deprecation stay out of sap runs."""

from __future__ import annotations

import logging
import warnings

import pytest

import sap.tasks  # noqa: F401  (importing the tasks quiets Lightning)
from sap.tasks.lightning_noise import RANK_ZERO_LOGGER, quiet_lightning


def test_a_trainer_prints_its_information_but_not_the_advertisement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import lightning as L

    with caplog.at_level(logging.INFO, logger=RANK_ZERO_LOGGER):
        L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False)
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("GPU available") for line in lines), lines
    assert not any("litlogger" in line for line in lines), lines
    # Without the filter Lightning does print it (else this test would prove nothing).
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    ours = [f for f in logger.filters if type(f).__name__ == "_DropAdvertisement"]
    caplog.clear()
    for f in ours:
        logger.removeFilter(f)
    try:
        with caplog.at_level(logging.INFO, logger=RANK_ZERO_LOGGER):
            L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False)
    finally:
        for f in ours:
            logger.addFilter(f)
    assert any("litlogger" in record.getMessage() for record in caplog.records)
    quiet_lightning()  # idempotent
    assert len(logging.getLogger(RANK_ZERO_LOGGER).filters) == len(
        {id(f) for f in logging.getLogger(RANK_ZERO_LOGGER).filters}
    )


def test_only_lightnings_own_leafspec_deprecation_is_ignored() -> None:
    message = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`"
    with warnings.catch_warnings(record=True) as caught:
        quiet_lightning()
        for module in ("lightning.pytorch.utilities._pytree", "my_own_code"):
            warnings.warn_explicit(message, FutureWarning, f"{module}.py", 21, module=module)
        warnings.warn_explicit(
            "another", FutureWarning, "x.py", 1, module="lightning.pytorch.utilities._pytree"
        )
    shown = [(w.filename, str(w.message)) for w in caught]
    assert shown == [("my_own_code.py", message), ("x.py", "another")]
