"""Tiny phantom settings shared by the experiment, task and benchmark tests."""

from __future__ import annotations

#: A whole-body phantom on a coarse grid: same field of view as the default, ~1/50 of the voxels.
TINY_PHANTOM = {"shape": (32, 20, 64), "spacing_mm": (15.0, 15.0, 18.0)}
