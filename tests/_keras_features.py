"""Skip markers for tests of Keras features that older Keras releases lack.

Each says which Keras is installed and what it lacks, so the oldest-Keras
session (`nox -s tests-keras-oldest`) shows what it did not test.
"""

import json
import re
import zipfile
from pathlib import Path

import keras
import pytest

KERAS_VERSION = tuple(int(n) for n in re.findall(r"\d+", keras.__version__)[:3])


def requires_keras(*names: str) -> pytest.MarkDecorator:
    """Skips unless `keras.<name>` exists for each name, e.g. `optimizers.Muon`."""
    missing = [f"keras.{name}" for name in names if not _has(name)]
    return pytest.mark.skipif(
        bool(missing), reason=f"Keras {keras.__version__} has no {', '.join(missing)}"
    )


def readable_by_this_keras(path: Path) -> pytest.MarkDecorator:
    """Skips when a `.keras` file was saved by a newer Keras than this one:
    Keras reads older files, not newer ones (their configs have new keys)."""
    with zipfile.ZipFile(path) as archive:
        saved_by = json.loads(archive.read("metadata.json"))["keras_version"]
    newer = tuple(int(n) for n in re.findall(r"\d+", saved_by)[:3]) > KERAS_VERSION
    return pytest.mark.skipif(
        newer, reason=f"{path.name} was saved by Keras {saved_by} > {keras.__version__}"
    )


def _loss_scaling_resets_inner_factor() -> bool:
    inner = keras.optimizers.SGD(loss_scale_factor=2.0)
    keras.optimizers.LossScaleOptimizer(inner)
    return inner.loss_scale_factor is None


requires_loss_scaling_reset = pytest.mark.skipif(
    not _loss_scaling_resets_inner_factor(),
    reason=f"Keras {keras.__version__}'s LossScaleOptimizer keeps the inner "
    "optimizer's loss_scale_factor",
)


def _has(name: str) -> bool:
    owner = keras
    for part in name.split("."):
        if not hasattr(owner, part):
            return False
        owner = getattr(owner, part)
    return True
