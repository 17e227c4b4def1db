"""Progress bars that behave in a terminal, in logs and in Jupyter: the one ``tqdm`` to use.

``tqdm.auto`` picks a Jupyter widget inside a notebook kernel, but without ``ipywidgets``
(the ``notebook`` extra) it warns "IProgress not found" on import and falls back to a text
bar that leaves a line per refresh in saved notebooks. :func:`progress_bar` uses the widget
only when ``ipywidgets`` is importable and the plain bar otherwise, which ``disable=None``
hides wherever output is not a terminal (logs, notebooks without widgets).
"""

from __future__ import annotations

import importlib.util
from typing import Any


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm`` bar: a widget in Jupyter with ipywidgets, else a terminal bar.

    Args:
        iterable: what to iterate over (or ``None`` and ``total=`` for manual updates).
        **kwargs: passed to ``tqdm`` (``desc``, ``total``, ``unit``, ``leave``, ``disable``).

    Example:
        >>> [n for n in progress_bar(range(3), disable=True)]
        [0, 1, 2]
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, **kwargs)


__all__ = ["progress_bar"]
