"""Fails the run when Keras is not on the backend the session asked for."""

import os

import keras
import numpy as np
import pytest

EXPECTED = os.environ.get("KERAS_BACKEND")


def pytest_sessionstart(session: pytest.Session) -> None:
    if EXPECTED is None:
        raise pytest.UsageError(
            "Set KERAS_BACKEND (jax, tensorflow or torch), or run "
            "`nox -s tests-<backend>`."
        )
    if keras.backend.backend() != EXPECTED:
        raise pytest.UsageError(
            f"KERAS_BACKEND={EXPECTED} but Keras runs on {keras.backend.backend()}."
        )


# Tests that do not depend on the backend run in one backend's session only.
BACKEND_FREE_RUNS_ON = "jax"


def pytest_configure(config: pytest.Config) -> None:
    for backend in ("jax", "tensorflow", "torch"):
        config.addinivalue_line(
            "markers", f"{backend}: runs only on the {backend} backend"
        )
    config.addinivalue_line(
        "markers",
        f"backend_free: uses no backend, so runs once, on {BACKEND_FREE_RUNS_ON}",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("backend_free") and EXPECTED != BACKEND_FREE_RUNS_ON:
        pytest.skip(f"backend-free: runs in the {BACKEND_FREE_RUNS_ON} session")
    backends = {"jax", "tensorflow", "torch"} & {m.name for m in item.iter_markers()}
    if backends and keras.backend.backend() not in backends:
        pytest.skip(f"needs the {' or '.join(sorted(backends))} backend")


@pytest.fixture(autouse=True)
def _seed() -> None:
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
