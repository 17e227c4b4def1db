"""Split cases into training and validation, by case and reproducibly."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np


def split_cases(
    case_ids: Sequence[str],
    val_fraction: float = 0.125,
    val_cases: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Split case ids into training and validation, by case, reproducibly.

    Args:
        case_ids: all case ids (order does not matter: they are sorted first).
        val_fraction: share of cases for validation when ``val_cases`` is not given,
            rounded to the nearest count; at least one case when > 0, never all.
        val_cases: explicit validation case ids (then ``val_fraction`` is ignored).
        seed: seed of the random split.

    Returns:
        ``(train_ids, val_ids)``, each sorted.

    Examples:
        >>> split_cases(["a", "b", "c", "d"], val_cases=["c"])
        (['a', 'b', 'd'], ['c'])
    """
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique.")
    if val_cases is not None:
        wanted = [str(c) for c in val_cases]
        unknown = [c for c in wanted if c not in ids]
        if unknown:
            hints = {c: difflib.get_close_matches(c, ids, n=3) for c in unknown}
            raise ValueError(
                f"val_cases {unknown} are not among the {len(ids)} cases found "
                f"(closest ids: {hints}); give ids of existing case folders / manifest rows."
            )
        val = sorted(set(wanted))
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}.")
        num_val = int(round(val_fraction * len(ids)))
        if val_fraction > 0:
            num_val = max(num_val, 1)
        num_val = min(num_val, len(ids) - 1)
        order = np.random.default_rng(seed).permutation(len(ids))
        val = sorted(ids[i] for i in order[:num_val])
    train = [c for c in ids if c not in set(val)]
    if not train:
        raise ValueError(
            f"no training case left: all {len(ids)} cases are validation cases; lower "
            f"val_fraction or shorten val_cases."
        )
    return train, val


__all__ = ["split_cases"]
