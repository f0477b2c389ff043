"""Deprecated aliases of renamed public names.

A module whose public function was renamed keeps the old name working, with a
``DeprecationWarning`` that names the new one, through a module ``__getattr__`` (PEP 562)::

    __getattr__ = renamed(__name__, {"special_ids": "config_special_ids"})
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Callable


def renamed(module: str, names: dict[str, str], fallback: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves each old name of ``names`` (old -> new, both in
    ``module``) with a deprecation warning; other names go to ``fallback`` or raise
    ``AttributeError``.

    >>> getter = renamed("os.path", {"joined": "join"})
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     getter("joined")("a", "b"), str(seen[0].message)
    ('a/b', 'os.path.joined is deprecated: it is now os.path.join')
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            warnings.warn(f"{module}.{name} is deprecated: it is now {module}.{names[name]}", DeprecationWarning, stacklevel=2)
            return getattr(sys.modules[module], names[name])
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
