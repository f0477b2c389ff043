"""Renamed public functions keep their old names, with a DeprecationWarning naming the new one;
one name per function (foreign.special_ids vs scores.special_ids, study.chance_levels vs
scores.chance_levels, reduce.final_table vs study.final_table were two functions each)."""

from __future__ import annotations

import importlib

import pytest

RENAMED = [
    ("repeatlens.foreign", "special_ids", "config_special_ids"),
    ("repeatlens.study", "chance_levels", "standard_chance_levels"),
    ("repeatlens.results.reduce", "final_table", "quantities_table"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED, ids=[r[1] for r in RENAMED])
def test_an_old_name_warns_and_is_the_new_function(module: str, old: str, new: str) -> None:
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated: it is now {module}\.{new}"):
        assert getattr(mod, old) is getattr(mod, new)
    assert old not in mod.__all__ and new in mod.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        mod.nope


#: Left as they are (issue 24 leaves them open): a figure named after the score it draws.
KNOWN_SHARED = {
    "offset_profile": ["repeatlens.plots.figures.per_head.offset_profile", "repeatlens.scores.attention.offset_profile"],
}


def test_one_function_per_public_name() -> None:
    """No public function or class name of the package names two different objects, but for
    :data:`KNOWN_SHARED`. ``scores.reference`` is left out: its independent
    re-implementations carry the names of the functions they check, on purpose."""
    import inspect
    import pkgutil

    import repeatlens

    owners: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(repeatlens.__path__, "repeatlens."):
        if info.name.rsplit(".", 1)[-1].startswith("_") or info.name == "repeatlens.scores.reference":
            continue
        mod = importlib.import_module(info.name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)  # getattr: some packages provide their names lazily
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("repeatlens"):
                owners.setdefault(name, set()).add(f"{obj.__module__}.{obj.__qualname__}")
    shared = {name: sorted(where) for name, where in owners.items() if len(where) > 1}
    assert shared == KNOWN_SHARED


def test_the_old_name_resolves_through_the_results_package_too() -> None:
    import repeatlens.results as results
    from repeatlens.results import reduce

    with pytest.warns(DeprecationWarning, match="final_table is deprecated"):
        assert results.final_table is reduce.quantities_table
    assert results.quantities_table is reduce.quantities_table


def test_the_moved_fit_names_still_resolve_through_reduce() -> None:
    from repeatlens.results import fits, reduce

    with pytest.warns(DeprecationWarning, match="moved to repeatlens.results.fits"):
        assert reduce.peak_of is fits.fit_peak
    with pytest.warns(DeprecationWarning, match="a pure power law has no irreducible term"):
        assert reduce.effective_size(4.0, 2.0, 1.0) == pytest.approx(0.5)


def test_the_manifest_moved_beside_the_run_directory_and_its_old_path_warns() -> None:
    from repeatlens.checkpoints import Manifest, RunDir
    from repeatlens.checkpoints import manifest as new
    from repeatlens.results import schema

    assert Manifest is new.Manifest and "Manifest" not in schema.__all__
    assert RunDir.manifest.__annotations__["return"] in ("Manifest", Manifest)
    for name in ("Manifest", "FileRecord"):
        with pytest.warns(DeprecationWarning, match=rf"repeatlens\.results\.schema\.{name} is deprecated: it is now repeatlens\.checkpoints\.manifest\.{name}"):
            assert getattr(schema, name) is getattr(new, name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        schema.nope  # noqa: B018
