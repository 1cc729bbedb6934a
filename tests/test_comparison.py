"""The comparison is fair (identical start, batches and random draws) and its
table, JSON and plot agree with the runs."""

import functools
import hashlib
import json
import math

import keras
import numpy as np
import pytest
from scipy import stats

from examples.horse_or_human import Batches
from keras_gc import comparison

EPOCHS, STEPS = 2, 3


def _build_model() -> keras.Model:
    # Random layers (flip, dropout) make "same draws in both arms" testable.
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


def _images(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype="uint8"), np.arange(n) % 2


class _Recording(keras.utils.PyDataset):
    """Logs a digest of every batch it hands out."""

    def __init__(self, inner: keras.utils.PyDataset, log: list[str]) -> None:
        super().__init__()
        self.inner, self.log = inner, log

    @property
    def num_batches(self) -> int | None:
        return self.inner.num_batches

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.inner[index]
        self.log.append(hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest())
        return x, y


def _compare(**kwargs):
    images, labels = _images()
    options = {
        "loss": "binary_crossentropy",
        "metrics": ["accuracy"],
        "epochs": EPOCHS,
        "steps_per_epoch": STEPS,
        "validation_steps": 2,
        "verbose": 0,
        "seeds": 2,
    }
    return comparison.compare(
        _build_model,
        lambda: keras.optimizers.SGD(0.5, momentum=0.9),
        kwargs.pop(
            "train",
            lambda seed: Batches(images, labels, batch_size=8, shuffle=True, seed=seed),
        ),
        Batches(images[:16], labels[:16], batch_size=8),
        **options | kwargs,
    )


@pytest.fixture(scope="module")
def recorded() -> tuple[comparison.Comparison, list[list[str]]]:
    """A GC comparison over two seeds, with a log of the batches of each fit."""
    images, labels = _images()
    logs: list[list[str]] = []

    def train(seed: int) -> _Recording:
        logs.append([])
        inner = Batches(images, labels, batch_size=8, shuffle=True, seed=seed)
        return _Recording(inner, logs[-1])

    return _compare(train=train, metadata={"note": "test"}), logs


@pytest.fixture(scope="module")
def result(recorded) -> comparison.Comparison:
    return recorded[0]


def test_pairs_start_from_the_same_weights_and_see_the_same_batches(recorded):
    result, logs = recorded
    first, second = result.seeds
    for seed in result.seeds:
        bare, gc = result.run("bare", seed), result.run("gc", seed)
        assert bare.initial_weights_sha256 == gc.initial_weights_sha256
    assert (
        result.run("bare", first).initial_weights_sha256
        != result.run("bare", second).initial_weights_sha256
    )
    # One log per fit, in run order: each pair's two logs agree on every
    # batch the runs consumed (a backend may prefetch a few more).
    assert len(logs) == 4
    for a, b in (logs[:2], logs[2:]):
        consumed = min(len(a), len(b))
        assert consumed >= EPOCHS * STEPS
        assert a[:consumed] == b[:consumed]
    assert logs[0][: EPOCHS * STEPS] != logs[2][: EPOCHS * STEPS]


def test_same_optimizer_in_both_arms_gives_identical_runs():
    # With GC swapped for nothing, any difference would come from weights,
    # batches, augmentation or dropout draws: there must be none.
    result = _compare(wrap=lambda optimizer: optimizer, seeds=[3])
    bare, gc = result.run("bare", 3), result.run("gc", 3)
    assert bare.history == gc.history
    assert len(bare.history["loss"]) == EPOCHS


def test_gc_arm_trains_differently(result):
    for seed in result.seeds:
        assert result.run("bare", seed).history != result.run("gc", seed).history
    assert result.metadata["optimizer"]["class_name"] == "SGD"
    assert result.metadata["gc_optimizer"]["class_name"] == (
        "GradientCentralizationOptimizer"
    )


def test_summary_is_mean_spread_and_paired_difference(result):
    summary = result.summary()
    assert set(summary) == {"bare", "gc", "gc - bare"}
    for name in ("total_seconds", "first_epoch_seconds", "val_accuracy", "loss"):
        bare = [result.run("bare", s).measures()[name] for s in result.seeds]
        gc = [result.run("gc", s).measures()[name] for s in result.seeds]
        diff = [g - b for g, b in zip(gc, bare, strict=True)]
        for group, values in (("bare", bare), ("gc", gc), ("gc - bare", diff)):
            stats = summary[group][name]
            assert stats["n"] == 2
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))


def test_timings(result):
    for run in result.runs:
        assert len(run.epoch_seconds) == EPOCHS
        assert run.first_epoch_seconds == run.epoch_seconds[0]
        assert run.later_epoch_seconds == pytest.approx(np.mean(run.epoch_seconds[1:]))
        assert sum(run.epoch_seconds) <= run.total_seconds


def test_table_json_and_plot_agree(result, tmp_path):
    paths = result.save(tmp_path / "out")
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")
    table = paths["table"].read_text()
    assert table == result.table()
    data = json.loads(paths["json"].read_text())
    assert data["metadata"]["note"] == "test"
    assert data["metadata"]["backend"] == keras.backend.backend()
    rows = {tuple(line.split(" | ")[:2]): line for line in table.splitlines()}
    for run in data["runs"]:
        row = rows[(f"| {run['arm']}", str(run["seed"]))]
        assert f" {run['total_seconds']:.1f} " in row
        for value in run["final"].values():
            assert f" {value:.4f} " in row
    diff = data["summary"]["gc - bare"]["val_accuracy"]
    assert f"{diff['mean']:.4f} ± {diff['std']:.4f}" in table


def _run(arm: str, seed: int, loss: list[float]) -> comparison.Run:
    return comparison.Run(
        arm, seed, {"loss": loss, "val_loss": loss}, [2.0] * len(loss), 9.0, "0"
    )


def test_table_golden():
    result = comparison.Comparison(
        (_run("bare", 0, [0.5, 0.25]), _run("gc", 0, [0.5, 0.125])), {}
    )
    assert result.table().splitlines()[2:] == [
        "| bare | 0 | 9.0 | 2.0 | 2.0 | 0.2500 | 0.2500 |",
        "| gc | 0 | 9.0 | 2.0 | 2.0 | 0.1250 | 0.1250 |",
        "| **bare** | mean ± sd, n=1 | 9.0 | 2.0 | 2.0 | 0.2500 | 0.2500 |",
        "| **gc** | mean ± sd, n=1 | 9.0 | 2.0 | 2.0 | 0.1250 | 0.1250 |",
        "| **GC minus bare** | mean ± sd, n=1 | 0.0 | 0.0 | 0.0 | -0.1250 | -0.1250 |",
        "",
        "| GC minus bare | mean | 95% interval | verdict |",
        "| --- | --- | --- | --- |",
        "| final val_loss | -0.1250 | - (one seed) | "
        "no difference detected with 1 seed |",
        "| time per epoch after the first (s) | +0.00 | - (one seed) | "
        "no difference detected with 1 seed |",
    ]


def test_one_seed_or_one_epoch_has_no_spread(tmp_path):
    result = comparison.Comparison((_run("bare", 0, [1.0]), _run("gc", 0, [0.5])), {})
    assert math.isnan(result.summary()["gc"]["loss"]["std"])
    assert math.isnan(result.runs[0].later_epoch_seconds)
    data = json.loads(result.save_json(tmp_path / "r.json").read_text())
    assert data["summary"]["gc"]["loss"]["std"] is None
    assert data["runs"][0]["later_epoch_seconds"] is None
    assert "| - |" in result.table()


def test_arrays_as_training_data():
    x = np.random.uniform(size=(16, 4)).astype("float32")
    result = comparison.compare(
        lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]),
        lambda: keras.optimizers.SGD(0.1),
        (x, x.sum(1, keepdims=True)),
        loss="mse",
        epochs=2,
        verbose=0,
    )
    assert len(result.run("gc", 0).history["loss"]) == 2


def test_rejects_reused_optimizer_unbuilt_model_and_bad_seeds():
    optimizer = keras.optimizers.SGD(0.1)
    data = (np.ones((4, 4)), np.ones((4, 1)))
    dense = functools.partial(keras.Sequential, [keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="new one each time"):
        comparison.compare(
            lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]),
            lambda: optimizer,
            data,
            loss="mse",
        )
    with pytest.raises(ValueError, match="must return a built model"):
        comparison.compare(dense, keras.optimizers.SGD, data, loss="mse")
    with pytest.raises(ValueError, match="`seeds`"):
        comparison.compare(dense, keras.optimizers.SGD, data, loss="mse", seeds=0)


def _seeded(arm: str, seed: int, accuracy: float, loss: float, epoch: float):
    history = {"val_accuracy": [0.5, accuracy], "val_loss": [0.7, loss]}
    return comparison.Run(arm, seed, history, [5.0, epoch], 9.0, "0")


# GC minus bare per seed: val_accuracy +0.02/+0.03/+0.04 (above 0), val_loss
# +0.01/-0.02/+0.02 (around 0), later epochs -0.5/-0.6/-0.4 s (below 0).
PAIRS = [
    ((0.80, 0.40, 2.0), (0.82, 0.41, 1.5)),
    ((0.70, 0.50, 2.1), (0.73, 0.48, 1.5)),
    ((0.90, 0.30, 1.9), (0.94, 0.32, 1.5)),
]


def _verdict_example(metadata: dict) -> comparison.Comparison:
    runs = []
    for seed, (bare, gc) in enumerate(PAIRS):
        runs += [_seeded("bare", seed, *bare), _seeded("gc", seed, *gc)]
    return comparison.Comparison(tuple(runs), metadata)


def test_verdicts_are_the_paired_t_interval(tmp_path):
    result = _verdict_example({"title": "made-up runs"})
    verdicts = result.verdicts()
    assert list(verdicts) == ["val_accuracy", "val_loss", "later_epoch_seconds"]
    for index, name in enumerate(verdicts):
        differences = [gc[index] - bare[index] for bare, gc in PAIRS]
        low, high = stats.t.interval(
            0.95, 2, loc=np.mean(differences), scale=stats.sem(differences)
        )
        assert verdicts[name]["mean"] == pytest.approx(np.mean(differences))
        assert verdicts[name]["low"] == pytest.approx(low)
        assert verdicts[name]["high"] == pytest.approx(high)
        assert verdicts[name]["n"] == 3
    # Accuracy's direction is unknown without the compiled metrics; a loss
    # and a time are better lower.
    assert verdicts["val_accuracy"]["verdict"] == "GC higher"
    assert verdicts["val_loss"]["verdict"] == "no difference detected with 3 seeds"
    assert verdicts["later_epoch_seconds"]["verdict"] == "GC better"
    directed = _verdict_example({"directions": {"accuracy": "up"}}).verdicts()
    assert directed["val_accuracy"]["verdict"] == "GC better"
    worse = _verdict_example({"directions": {"accuracy": "down"}}).verdicts()
    assert worse["val_accuracy"]["verdict"] == "GC worse"

    lines = result.verdict_lines()
    assert lines[0] == (
        f"GC minus bare, final val_accuracy: +0.0300, 95% interval "
        f"{verdicts['val_accuracy']['low']:+.4f} to "
        f"{verdicts['val_accuracy']['high']:+.4f}: GC higher."
    )
    table = result.table()
    assert table.startswith("**made-up runs**\n\n")
    assert "| final val_loss | +0.0033 | " in table
    assert "| time per epoch after the first (s) | -0.50 | " in table
    data = json.loads(result.save_json(tmp_path / "r.json").read_text())
    assert data["verdict"]["later_epoch_seconds"]["verdict"] == "GC better"
    assert data["verdict"]["val_loss"]["low"] == pytest.approx(
        verdicts["val_loss"]["low"]
    )


def test_compare_records_which_way_each_metric_is_better(result):
    assert result.metadata["directions"] == {"loss": "down", "accuracy": "up"}
    assert result.verdicts()["val_accuracy"]["verdict"] in (
        "GC better",
        "GC worse",
        "no difference detected with 2 seeds",
    )


def _dense() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])


def test_rejects_an_optimizer_or_model_where_a_function_is_needed():
    data = (np.ones((4, 4)), np.ones((4, 1)))
    with pytest.raises(TypeError, match=r"`make_optimizer` must be a function.*SGD"):
        comparison.compare(_dense, keras.optimizers.SGD(0.1), data, loss="mse")
    with pytest.raises(
        TypeError, match=r"`build_model` must be a function.*Sequential"
    ):
        comparison.compare(_dense(), keras.optimizers.SGD, data, loss="mse")


def test_rejects_one_shot_data_the_second_run_would_find_empty():
    def batches():
        for _ in range(2):
            yield np.ones((4, 4)), np.ones((4, 1))

    arrays = (np.ones((4, 4)), np.ones((4, 1)))
    with pytest.raises(TypeError, match="`train` is a one-shot iterator"):
        comparison.compare(_dense, keras.optimizers.SGD, batches(), loss="mse")
    with pytest.raises(TypeError, match="`validation` is a one-shot iterator"):
        comparison.compare(_dense, keras.optimizers.SGD, arrays, batches(), loss="mse")
    # A function of the seed may return a fresh generator for every run.
    result = comparison.compare(
        _dense,
        keras.optimizers.SGD,
        lambda seed: batches(),
        loss="mse",
        steps_per_epoch=2,
        verbose=0,
    )
    assert len(result.runs) == 2


def test_a_diverged_run_gives_no_verdict_instead_of_a_crash():
    runs = []
    for seed, (bare, gc) in enumerate(PAIRS):
        gc = (math.nan, math.nan, gc[2]) if seed == 1 else gc
        runs += [_seeded("bare", seed, *bare), _seeded("gc", seed, *gc)]
    verdicts = comparison.Comparison(tuple(runs), {}).verdicts()
    assert verdicts["val_loss"]["verdict"] == (
        "no verdict: a run diverged (a measure is not finite)"
    )
    assert math.isnan(verdicts["val_loss"]["low"])
    assert verdicts["later_epoch_seconds"]["verdict"] == "GC better"
