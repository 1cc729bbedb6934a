"""Fails the run when Keras is not on the backend the session asked for."""

import os
from pathlib import Path
from typing import Any

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


# The modules whose tests share a module- or session-scoped fixture (most
# launch processes), by the scope pytest-xdist keeps on one worker: the two
# horse-or-human modules share the synthetic set. `test_package.py` checks
# that every module with such a fixture is here.
SHARED_FIXTURE_SCOPES = {
    "tests/test_comparison.py": "comparison",
    "tests/test_distributed.py": "distributed",
    "tests/test_multiprocess.py": "multiprocess",
    "tests/test_horse_or_human_online.py": "horse_or_human_online",
    "tests/test_horse_or_human.py": "horse_or_human",
    "tests/test_example_horse_or_human.py": "horse_or_human",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist=loadscope` with a scope per test, except the modules above.

    Each test goes to the next free worker, so that the long modules (the
    docs, `fit`) spread over the workers, while a module-scoped fixture still
    runs once. (`--dist=loadgroup` would do this by marker, but pytest-xdist
    3.8 does not group under pytest 9.)
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_FIXTURE_SCOPES.get(nodeid.split("::", 1)[0], nodeid)

    return SharedFixtureScheduling(config, log)


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


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`$KERAS_HOME/datasets` for a `KERAS_HOME` shared by the test modules,
    so that the full synthetic horse-or-human set is drawn once per session
    (the two modules that use it share a pytest-xdist scope)."""
    return tmp_path_factory.getbasetemp() / "keras-home" / "datasets"
