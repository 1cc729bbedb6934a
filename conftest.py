"""Names the docstring examples of keras_gc use, for `pytest --doctest-modules`."""

import keras
import numpy as np
import pytest

import keras_gc


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(keras=keras, keras_gc=keras_gc, np=np)
