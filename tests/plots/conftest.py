"""Fixtures for the plotting tests; the table factories live in ``plot_factories``."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.plots.plot_factories import make_metrics, make_scores


@pytest.fixture(scope="session")
def sweep() -> pd.DataFrame:
    """Two model sizes × (control + 2 fractions × 3 repeat counts) × 2 seeds."""
    return make_scores()


@pytest.fixture(scope="session")
def sweep_metrics(sweep: pd.DataFrame) -> pd.DataFrame:
    """Training metrics for :func:`sweep`."""
    return make_metrics(sweep)


@pytest.fixture(scope="session")
def one_size() -> pd.DataFrame:
    """A single model size, one seed."""
    return make_scores(models=(("tiny", 100_000),), seeds=(0,))


REPORT_METRICS = ("test_loss", "repeated_loss", "copying_loss", "induction")


@pytest.fixture(scope="session")
def sweep_small() -> pd.DataFrame:
    """Both model sizes (so every figure kind appears), one seed, four metrics, 5 checkpoints."""
    return make_scores(seeds=(0,), metrics=REPORT_METRICS, steps=(0, 100, 400, 1600, 3200))


@pytest.fixture(scope="session")
def small_figures(sweep_small: pd.DataFrame) -> dict:
    """``available_figures`` of :func:`sweep_small` with its training metrics."""
    from repeatlens.plots import available_figures

    return available_figures(sweep_small, make_metrics(sweep_small))


def chromium_or_skip() -> str:
    """Path of Chromium, or skip the test saying how to install it."""
    from repeatlens.plots.export import find_chromium

    path = find_chromium()
    if path is None:
        pytest.skip("Chromium not installed (apt-get install chromium chromium-driver); needed for a real browser")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the Chromium executable (skips the test if there is none)."""
    return chromium_or_skip()


@pytest.fixture(scope="session")
def chromedriver() -> str:
    """Path of chromedriver matching the installed Chromium (skips if none)."""
    chromium_or_skip()
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("Chromium is installed but selenium is not: pip install 'repeatlens[dev]'")
    path = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if shutil.which("/usr/bin/chromedriver") else None)
    if path is None:
        pytest.skip("chromedriver not installed (apt-get install chromium-driver)")
    return path
