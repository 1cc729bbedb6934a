"""Names the docstring examples of keras_gc use, for `pytest --doctest-modules`."""

import keras
import numpy as np
import pytest

import keras_gc

# The other backends' fast paths import their backend, which is not installed.
collect_ignore = [
    f"keras_gc/backend/{name}.py"
    for name in ("jax", "tensorflow", "torch")
    if name != keras.backend.backend()
]
# Scripts, not tests: what made the saved-model fixture, and `nox -s build`'s check
# of an installed wheel.
collect_ignore_glob = ["tests/fixtures/*.py", "tests/wheel_smoke.py"]


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(keras=keras, keras_gc=keras_gc, np=np)
