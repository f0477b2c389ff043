"""The probe key of every row of a scores table: what :mod:`.store` (the tables on disk) and
:mod:`.reduce` (the reductions) both read, in a module of its own so that neither imports
the other to get it (the key itself: :func:`repeatlens.results.schema.probe_key`)."""

from __future__ import annotations

import pandas as pd

from repeatlens.results.schema import probe_key

__all__ = ["row_keys"]


def row_keys(df: pd.DataFrame) -> pd.Series:
    """The probe key of every row (``""`` where the row read no probe).

    >>> import pandas as pd
    >>> row_keys(pd.DataFrame({"probe": ["synthetic", ""], "probe_len": [30, None], "probe_batch": [16, None],
    ...                        "probe_seed": [0, None]})).tolist()
    ['synthetic:L30:B16:s0', '']
    """
    if df.empty:
        return pd.Series([], dtype="object", index=df.index)
    return pd.Series(
        [probe_key(p, n, b, s) for p, n, b, s in zip(df["probe"], df["probe_len"], df["probe_batch"], df["probe_seed"])],
        index=df.index,
        dtype="object",
    )
