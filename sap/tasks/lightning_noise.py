"""Two lines Lightning prints on every run that a SAP user can do nothing about, left out.

* ``💡 Tip: For seamless cloud logging ...``: an advertisement for a hosted logger, printed
  through Lightning's ``rank_zero_info`` each time a Trainer configures its loggers (every
  ``sap fit``, every benchmark run, every notebook cell that trains).
* ```isinstance(treespec, LeafSpec)` is deprecated``: Lightning's own call into a torch API
  that newer torch deprecates; it comes from inside Lightning, once per fit.

Both are removed by exact text only: every other Lightning message and warning still shows.
"""

from __future__ import annotations

import logging
import warnings

#: Start of the advertisement line.
TIP_PREFIX = "💡 Tip: For seamless cloud logging"
#: Lightning's logger that prints it.
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


_FILTER = _DropAdvertisement()


def quiet_lightning() -> None:
    """Drop the two lines above (idempotent: the filter is added once)."""
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


__all__ = ["quiet_lightning"]
