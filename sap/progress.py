"""Progress bars that behave in a terminal, in logs and in Jupyter: the one ``tqdm`` to use.

``tqdm.auto`` picks a Jupyter widget inside a notebook kernel, but without ``ipywidgets``
(the ``notebook`` extra) it warns "IProgress not found" on import and falls back to a text
bar that leaves a line per refresh in saved notebooks; with ``disable=None`` it also hides
the widget, because a kernel's output is not a terminal. :func:`progress_bar` shows the widget
in a Jupyter kernel with ``ipywidgets``, and otherwise the plain bar, which ``disable=None``
hides wherever output is not a terminal (logs, notebooks without widgets).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter (IPython) kernel."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm`` bar: a widget in Jupyter with ipywidgets, else a terminal bar.

    Args:
        iterable: what to iterate over (or ``None`` and ``total=`` for manual updates).
        **kwargs: passed to ``tqdm`` (``desc``, ``total``, ``unit``, ``leave``, ``disable``;
            ``disable=None``: shown in a terminal or as a widget, hidden elsewhere).

    Example:
        >>> [n for n in progress_bar(range(3), disable=True)]
        [0, 1, 2]
    """
    if in_jupyter_kernel() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm

        if kwargs.get("disable", False) is None:
            kwargs["disable"] = False
        return tqdm(iterable, **kwargs)
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


__all__ = ["in_jupyter_kernel", "progress_bar"]
