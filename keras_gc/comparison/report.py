"""The results of `keras_gc.compare`: runs, summary, table and JSON."""

import dataclasses
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_gc.comparison.plot import draw_curves
from keras_gc.comparison.stats import CONFIDENCE, paired_interval, verdict

__all__ = ["ARMS", "Comparison", "Run"]

ARMS = ("bare", "gc")
"""The two arms: the optimizer as given, and wrapped."""

DIFFERENCE = "gc - bare"
TIMES = {
    "total_seconds": "time (s)",
    "first_epoch_seconds": "1st epoch (s)",
    "later_epoch_seconds": "later epochs (s/epoch)",
}


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a comparison.

    Attributes:
        arm: `"bare"` or `"gc"`.
        seed: The seed of the pair this run belongs to.
        history: `History.history` of `fit`: each metric per epoch.
        epoch_seconds: Wall time of each epoch, validation included; the
            first includes compiling the training and evaluation steps.
        total_seconds: Wall time of the whole `fit` call.
        initial_weights_sha256: SHA-256 of the weights `fit` started from.
    """

    arm: str
    seed: int
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    total_seconds: float
    initial_weights_sha256: str

    @property
    def first_epoch_seconds(self) -> float:
        """Wall time of the first epoch, compilation included."""
        return self.epoch_seconds[0]

    @property
    def later_epoch_seconds(self) -> float:
        """Mean wall time of the epochs after the first (NaN if none)."""
        later = self.epoch_seconds[1:]
        return statistics.fmean(later) if later else math.nan

    def measures(self) -> dict[str, float]:
        """Returns the timings and the last epoch's value of every metric."""
        times = {name: float(getattr(self, name)) for name in TIMES}
        return times | {name: values[-1] for name, values in self.history.items()}

    def to_dict(self) -> dict[str, Any]:
        """Returns the run as JSON-friendly data, derived timings included."""
        return dataclasses.asdict(self) | {
            "first_epoch_seconds": self.first_epoch_seconds,
            "later_epoch_seconds": self.later_epoch_seconds,
            "final": {name: values[-1] for name, values in self.history.items()},
        }


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The runs of `compare`, with their summary, table, JSON and plot.

    Attributes:
        runs: Every run, pair by pair in seed order.
        metadata: The settings, the software versions and whatever the
            caller added (the data's source, for example).
    """

    runs: tuple[Run, ...]
    metadata: dict[str, Any]

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order they ran."""
        return list(dict.fromkeys(run.seed for run in self.runs))

    def run(self, arm: str, seed: int) -> Run:
        """Returns the run of `arm` (`"bare"` or `"gc"`) for `seed`."""
        for run in self.runs:
            if run.arm == arm and run.seed == seed:
                return run
        raise KeyError(f"No run of arm {arm!r} with seed {seed}.")

    def measure_names(self) -> list[str]:
        """Names of what is measured: timings, then metrics (training first)."""
        metrics = list(self.runs[0].history)
        train = [m for m in metrics if not m.startswith("val_")]
        return [*TIMES, *train, *(m for m in metrics if m.startswith("val_"))]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Summarizes each measure over the seeds.

        Returns:
            `{group: {measure: {"mean", "std", "min", "max", "n"}}}` for the
            groups `"bare"`, `"gc"` and `"gc - bare"` (the per-seed paired
            difference). `std` is the sample standard deviation (NaN for one
            seed).
        """
        values: dict[str, dict[str, list[float]]] = {}
        for seed in self.seeds:
            bare = self.run("bare", seed).measures()
            gc = self.run("gc", seed).measures()
            for group, measures in (
                ("bare", bare),
                ("gc", gc),
                (DIFFERENCE, {k: gc[k] - bare[k] for k in bare}),
            ):
                for name, value in measures.items():
                    values.setdefault(group, {}).setdefault(name, []).append(value)
        return {
            group: {name: _stats(v) for name, v in measures.items()}
            for group, measures in values.items()
        }

    def headline_measures(self) -> list[str]:
        """The measures given a verdict: the final validation metrics (the
        training metrics when there is no validation) and the time per epoch
        after the first."""
        metrics = [m for m in self.measure_names() if m not in TIMES]
        validation = [m for m in metrics if m.startswith("val_")]
        return [*(validation or metrics), "later_epoch_seconds"]

    def verdicts(self) -> dict[str, dict[str, Any]]:
        """Says, for each headline measure, whether GC changed it.

        The 95% t-interval of the mean paired difference (GC minus bare)
        over the seeds decides: above or below 0 is "GC better" or "GC
        worse" (whether higher is better comes from the Keras metric, or the
        name "loss", or is a time), else "no difference detected with n
        seeds".

        Returns:
            `{measure: {"mean", "low", "high", "confidence", "n",
            "verdict"}}`; `low` and `high` are NaN for one seed, and the
            verdict is "not measured" for a time per epoch of one epoch.
        """
        result = {}
        for name in self.headline_measures():
            differences = [
                self.run("gc", s).measures()[name]
                - self.run("bare", s).measures()[name]
                for s in self.seeds
            ]
            low, high = paired_interval(differences, CONFIDENCE)
            mean = float(np.mean(differences))
            result[name] = {
                "mean": mean,
                "low": low,
                "high": high,
                "confidence": CONFIDENCE,
                "n": len(differences),
                "verdict": _verdict(differences, low, high, self._higher(name)),
            }
        return result

    def _higher(self, name: str) -> bool | None:
        """Whether a larger value of measure `name` is better (`None`: unknown)."""
        if name in TIMES:
            return False
        metric = name.removeprefix("val_")
        direction = self.metadata.get("directions", {}).get(metric)
        if direction is not None:
            return bool(direction == "up")
        return False if metric.endswith("loss") else None

    def verdict_lines(self) -> list[str]:
        """Returns `verdicts()` as one sentence per headline measure."""
        return [
            f"GC minus bare, {_label(name)}: {_signed(name, v['mean'])}, "
            f"{v['confidence']:.0%} interval {_interval(name, v)}: {v['verdict']}."
            for name, v in self.verdicts().items()
        ]

    def table(self) -> str:
        """Renders the runs, their summary and the verdicts as Markdown.

        One row per run; then, per arm, the mean ± standard deviation over
        the seeds, and the mean ± standard deviation of the paired
        difference (GC minus bare). Times in seconds, metrics to 4 decimals.
        A second table gives each headline measure's verdict. A `"title"` in
        the metadata (e.g. what the data are) heads both.
        """
        names = self.measure_names()
        header = ["run", "seed", *(TIMES.get(name, name) for name in names)]
        rows = [
            [
                run.arm,
                str(run.seed),
                *(_number(name, run.measures()[name]) for name in names),
            ]
            for run in self.runs
        ]
        n = len(self.seeds)
        for group, stats in self.summary().items():
            label = "GC minus bare" if group == DIFFERENCE else group
            rows.append(
                [f"**{label}**", f"mean ± sd, n={n}"]
                + [_spread(name, stats[name]) for name in names]
            )
        verdicts = [
            [_label(name), _signed(name, v["mean"]), _interval(name, v), v["verdict"]]
            for name, v in self.verdicts().items()
        ]
        title = self.metadata.get("title")
        return "".join(
            [
                f"**{title}**\n\n" if title else "",
                _markdown(header, rows),
                "\n",
                _markdown(
                    ["GC minus bare", "mean", f"{CONFIDENCE:.0%} interval", "verdict"],
                    verdicts,
                ),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """Returns everything as JSON-friendly data (NaN becomes `null`)."""
        return jsonable(
            {
                "metadata": self.metadata,
                "runs": [run.to_dict() for run in self.runs],
                "summary": self.summary(),
                "verdict": self.verdicts(),
            }
        )

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Writes `to_dict()` to `path` as JSON and returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def save_table(self, path: str | os.PathLike[str]) -> Path:
        """Writes `table()` to `path` and returns the path."""
        path = Path(path)
        path.write_text(self.table())
        return path

    def save_plot(self, path: str | os.PathLike[str]) -> Path:
        """Plots each metric per epoch, training and validation, both arms.

        With several seeds, a line is the mean over the seeds and the band
        around it spans their minimum and maximum. Needs matplotlib.

        Args:
            path: Where to write the PNG.

        Returns:
            The path.
        """
        metrics = [m for m in self.measure_names() if m not in TIMES]
        curves = {
            arm: {
                m: np.array([self.run(arm, s).history[m] for s in self.seeds])
                for m in metrics
            }
            for arm in ARMS
        }
        title = self.metadata.get("title")
        return draw_curves(
            curves,
            (f"{title}\n" if title else "")
            + f"With and without Gradient Centralization ({len(self.seeds)} seed(s))",
            path,
        )

    def save(
        self, directory: str | os.PathLike[str], *, plot: bool = True
    ) -> dict[str, Path]:
        """Writes `table.md`, `results.json` and (if `plot`) `curves.png`.

        Args:
            directory: The folder to write in; created if needed.
            plot: Whether to write the plot (needs matplotlib).

        Returns:
            `{"table": path, "json": path, "plot": path}` (no `"plot"` if
            `plot=False`).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "table": self.save_table(directory / "table.md"),
            "json": self.save_json(directory / "results.json"),
        }
        if plot:
            paths["plot"] = self.save_plot(directory / "curves.png")
        return paths


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
    }


def _number(name: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if name in TIMES else f"{value:.4f}"


def _signed(name: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.2f}" if name in TIMES else f"{value:+.4f}"


def _interval(name: str, verdict: Mapping[str, Any]) -> str:
    if math.isnan(verdict["low"]):
        return "- (one seed)"
    return f"{_signed(name, verdict['low'])} to {_signed(name, verdict['high'])}"


def _label(name: str) -> str:
    return "time per epoch after the first (s)" if name in TIMES else f"final {name}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def _spread(name: str, stats: Mapping[str, float]) -> str:
    mean = _number(name, stats["mean"])
    if math.isnan(stats["std"]):
        return mean
    return f"{mean} ± {_number(name, stats['std'])}"


def jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _verdict(
    differences: list[float], low: float, high: float, higher: bool | None
) -> str:
    """The verdict on the paired differences of one measure."""
    if all(math.isnan(d) for d in differences):
        return "not measured"
    if not all(math.isfinite(d) for d in differences):
        return "no verdict: a run diverged (a measure is not finite)"
    return verdict(low, high, len(differences), higher)
