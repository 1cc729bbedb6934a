"""The package's shape: what importing it loads, where backends are imported,
the size of its files and the constructors it builds from Keras."""

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import keras_gc

PACKAGE = Path(keras_gc.__file__).parent
BACKENDS = ("jax", "tensorflow", "torch")


def test_import_loads_no_networking_archive_image_or_plotting_code():
    script = (
        "import json, sys; import keras; before = set(sys.modules); "
        "import keras_gc; print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    )
    added = json.loads(result.stdout.strip().splitlines()[-1])
    assert "keras_gc" in added
    forbidden = ("urllib.request", "zipfile", "PIL", "matplotlib", "http.client")
    loaded = [m for m in added if m.split(".")[0] in forbidden or m in forbidden]
    assert loaded == []


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_backends_are_imported_only_in_their_own_module():
    for path in PACKAGE.rglob("*.py"):
        imported = set(_imported_modules(path)) & set(BACKENDS)
        allowed = {path.stem} if path.parent.name == "backend" else set()
        assert imported <= allowed, f"{path.relative_to(PACKAGE)} imports {imported}"


def test_no_module_is_over_400_lines():
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines"


def test_the_backend_fast_path_is_the_running_backends():
    from keras_gc import backend

    module = sys.modules[f"keras_gc.backend.{keras.backend.backend()}"]
    assert backend.subtract_mean is module.subtract_mean
    assert backend.subtract_means is module.subtract_means


@pytest.mark.parametrize("name", keras_gc.optimizers.__all__)
def test_optimizers_have_the_keras_signature_plus_the_options(name):
    keras_parameters = inspect.signature(getattr(keras.optimizers, name)).parameters
    ours = inspect.signature(getattr(keras_gc.optimizers, name)).parameters
    options = [f.name for f in keras_gc.Options.__dataclass_fields__.values()]
    assert [p for p in ours if p not in options] == list(keras_parameters)
    for option in options:
        assert ours[option].kind is inspect.Parameter.KEYWORD_ONLY


def test_an_optimizer_keras_lacks_is_a_clear_error():
    with pytest.raises(AttributeError, match=r"keras_gc\.optimizers has no `Sophia`"):
        _ = keras_gc.optimizers.Sophia


def test_options_are_checked_once_and_frozen():
    options = keras_gc.Options(include=["conv"], output_axes={"head": [1]})
    assert options.include == ("conv",)
    assert options.output_axes == {"head": (1,)}
    with pytest.raises(AttributeError):
        options.mode = "update"  # type: ignore[misc]
    with pytest.raises(TypeError, match="output_axes\\['head'\\]` must be an int"):
        keras_gc.Options(output_axes={"head": "1"})


def test_unknown_options_name_the_accepted_ones():
    accepted = "`conv_only`, `include`, `exclude`, `output_axes`, `mode`"
    with pytest.raises(TypeError, match=f"wrap got unexpected.*{accepted}"):
        keras_gc.wrap(keras.optimizers.SGD(), conv_onyl=True)
    with pytest.raises(TypeError, match=f"plan got unexpected.*{accepted}"):
        keras_gc.plan([], excludes="bias")
    with pytest.raises(ValueError, match="set it on the inner optimizer"):
        keras_gc.wrap(keras.optimizers.SGD(), learning_rate=0.1)


@pytest.mark.backend_free
def test_each_module_with_a_shared_fixture_keeps_its_tests_on_one_worker():
    from conftest import SHARED_FIXTURE_SCOPES

    tests = Path(__file__).parent
    shared = set()
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        scoped = any(
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "fixture"
            and any(
                k.arg == "scope" and getattr(k.value, "value", None) != "function"
                for k in node.keywords
            )
            for node in ast.walk(tree)
        )
        uses_cache = any(
            isinstance(node, ast.FunctionDef)
            and "synthetic_cache" in [a.arg for a in node.args.args]
            for node in ast.walk(tree)
        )
        if scoped or uses_cache:
            shared.add(f"tests/{path.name}")
    assert shared == set(SHARED_FIXTURE_SCOPES)
