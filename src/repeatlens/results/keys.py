"""The probe key of every row of a scores table: what :mod:`.store` (the tables on disk) and
:mod:`.reduce` (the reductions) both read, in a module of its own so that neither imports
the other to get it. The key itself is built by :func:`repeatlens.results.schema.probe_key`
alone and read back by :func:`repeatlens.results.schema.parse_key`; the store writes it as
the :data:`~repeatlens.results.schema.PROBE_KEY` column."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from repeatlens.results.schema import PROBE_COLUMNS, PROBE_KEY, probe_key

__all__ = ["row_keys", "derive_keys", "in_pairs"]


def row_keys(df: pd.DataFrame) -> pd.Series:
    """The probe key of every row (``""`` where the row read no probe): the stored
    :data:`~repeatlens.results.schema.PROBE_KEY` column, or, for a table without it (written
    before it was stored, or rows straight from :func:`repeatlens.scores.score_model`),
    :func:`derive_keys`.

    >>> import pandas as pd
    >>> row_keys(pd.DataFrame({"probe": ["synthetic", ""], "probe_len": [30, None], "probe_batch": [16, None],
    ...                        "probe_seed": [0, None]})).tolist()
    ['synthetic:L30:B16:s0', '']
    """
    if PROBE_KEY in df.columns:
        return df[PROBE_KEY].astype(object)
    return derive_keys(df)


def derive_keys(df: pd.DataFrame) -> pd.Series:
    """The probe key of every row from the four probe columns, vectorised: each distinct
    probe's key is built once (a table holds a handful) and joined back onto the rows.

    >>> import pandas as pd
    >>> derive_keys(pd.DataFrame({"probe": ["text", "", "text"], "probe_len": [20, None, 20], "probe_batch": [8, None, 8],
    ...                           "probe_seed": [1, None, 1]}, index=[5, 6, 7])).to_dict()
    {5: 'text:L20:B8:s1', 6: '', 7: 'text:L20:B8:s1'}
    """
    if df.empty:
        return pd.Series([], dtype="object", index=df.index)
    probes = df[PROBE_COLUMNS].reset_index(drop=True)
    distinct = probes.drop_duplicates()
    keys = distinct.assign(**{PROBE_KEY: [probe_key(*p) for p in distinct.itertuples(index=False, name=None)]})
    joined = probes.merge(keys, how="left", on=PROBE_COLUMNS)  # a left merge keeps the rows' order
    return pd.Series(joined[PROBE_KEY].to_numpy(dtype=object), index=df.index, dtype="object")


def in_pairs(df: pd.DataFrame, pairs: Iterable[tuple[str, str]]) -> np.ndarray:
    """Which rows' (metric, probe key) is one of ``pairs`` (a boolean mask, vectorised).

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"metric": ["induction", "induction", "test_loss"], "probe_key": ["text:L20:B8:s1", "uniform:L20:B8:s1", ""]})
    >>> in_pairs(rows, [("induction", "text:L20:B8:s1"), ("test_loss", "")]).tolist()
    [True, False, True]
    """
    wanted = list(pairs)
    if df.empty or not wanted:
        return np.zeros(len(df), dtype=bool)
    return pd.MultiIndex.from_arrays([df["metric"].astype(object), row_keys(df)]).isin(wanted)
