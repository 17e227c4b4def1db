"""The version of ``sap``: one place, read by the package root, the zoo and the build."""

from __future__ import annotations

__version__ = "0.1.0"
