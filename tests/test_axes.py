"""One rule for axes wherever they are given: `centralize(axes=)`, the
`output_axes` option, and the plan that applies it to a variable."""

import keras
import numpy as np
import pytest

import keras_gc

GRADIENT = np.arange(12, dtype="float32").reshape(4, 3)


def _model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])


def _centralize(axes):
    return keras_gc.centralize(GRADIENT, axes)


def _options(axes):
    return keras_gc.Options(output_axes={"dense/kernel": axes})


def _plan(axes):
    return keras_gc.plan(_model(), output_axes={"dense/kernel": axes})


BAD = [
    # (axes, error, message, also refused by Options before the rank is known)
    (True, TypeError, "not bools", True),
    ((0, False), TypeError, "not bools", True),
    ((0.0,), TypeError, "must be an int or a sequence of ints", True),
    ("0", TypeError, "must be an int or a sequence of ints", True),
    ((), ValueError, "is empty", True),
    ((1, 1), ValueError, "name an axis twice", True),
    ((1, -1), ValueError, "name an axis twice", False),
    (5, ValueError, r"out of range.*must be in \[-2, 2\)", False),
    ((-3,), ValueError, "out of range", False),
]


@pytest.mark.parametrize(
    ("entry", "axes", "error", "message"),
    [
        pytest.param(entry, axes, error, message, id=f"{entry.__name__}-{axes!r}")
        for axes, error, message, early in BAD
        for entry in (_centralize, _plan, *([_options] if early else []))
    ],
)
def test_bad_axes_get_the_same_error_everywhere(entry, axes, error, message):
    with pytest.raises(error, match=message):
        entry(axes)


def test_options_leave_the_range_to_the_plan():
    # The rank is known only once a variable is: `_plan` above refuses these.
    for axes, _, _, early in BAD:
        if not early:
            assert _options(axes).output_axes["dense/kernel"] == axes


@pytest.mark.parametrize("axes", [np.int64(1), -1, [np.int32(-1)], (1,)])
def test_numpy_and_negative_axes_are_accepted(axes):
    (kernel, _) = _plan(axes)
    assert kernel.output_axes == (1,)
    assert kernel.axes == (0,)


@pytest.mark.parametrize("axes", [np.int64(0), -2, (np.int32(0),)])
def test_centralize_takes_numpy_and_negative_axes(axes):
    np.testing.assert_allclose(
        _centralize(axes), GRADIENT - GRADIENT.mean(axis=0), atol=1e-6
    )
