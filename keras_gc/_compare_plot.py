"""The curves of a comparison, drawn with matplotlib (imported only here,
when a plot is asked for)."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_gc._compare_report import ARMS, TIMES

if TYPE_CHECKING:
    from keras_gc._compare_report import Comparison


def save_plot(comparison: "Comparison", path: str | os.PathLike[str]) -> Path:
    """Writes `Comparison.save_plot`'s PNG to `path` and returns the path."""
    figure_class, canvas_class = _matplotlib()
    metrics = [m for m in comparison.measure_names() if m not in TIMES]
    panels = [m for m in metrics if not m.startswith("val_")]
    figure = figure_class(figsize=(6 * len(panels), 4.5), layout="constrained")
    for axes, metric in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        for arm, colour in zip(ARMS, ("tab:blue", "tab:orange"), strict=True):
            for name, style in ((metric, "-"), (f"val_{metric}", "--")):
                if name not in metrics:
                    continue
                curves = np.array(
                    [comparison.run(arm, s).history[name] for s in comparison.seeds]
                )
                epochs = np.arange(1, curves.shape[1] + 1)
                kind = "validation" if name.startswith("val_") else "training"
                axes.plot(
                    epochs,
                    curves.mean(0),
                    style,
                    color=colour,
                    label=f"{arm}, {kind}",
                )
                if len(curves) > 1:
                    axes.fill_between(
                        epochs,
                        curves.min(0),
                        curves.max(0),
                        color=colour,
                        alpha=0.15,
                    )
        axes.set(xlabel="epoch", ylabel=metric, title=metric)
        axes.legend()
    title = comparison.metadata.get("title")
    figure.suptitle(
        (f"{title}\n" if title else "")
        + f"With and without Gradient Centralization ({len(comparison.seeds)} seed(s))"
    )
    canvas_class(figure).print_png(str(path))
    return Path(path)


def _matplotlib() -> tuple[Any, Any]:
    """Imports matplotlib's figure and Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: `pip install matplotlib` (or "
            "`pip install keras-gc[examples]`), or skip the plot."
        ) from None
    return Figure, FigureCanvasAgg
