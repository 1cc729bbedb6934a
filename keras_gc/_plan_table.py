"""`print(plan)`: a `keras_gc.Plan` as a table, one row per variable."""

import math
from typing import Any


def plan_table(plan: Any) -> str:
    """The plan's rows (path, shape, layer, GC, AGC when on, output axes,
    reason) and a summary of what it touches."""
    rows: list[tuple[str, ...]] = [
        ("path", "shape", "layer", "GC", "output axes", "reason")
    ]
    for e in plan.entries:
        rows.append(
            (
                e.path,
                str(e.shape),
                e.layer or "-",
                "yes" if e.centralized else "no",
                "-" if e.output_axes is None else str(e.output_axes),
                e.reason,
            )
        )
    if plan.agc is not None:
        cells = ["AGC"] + ["yes" if e.clipped else "no" for e in plan.entries]
        rows = [(*r[:4], c, *r[4:]) for r, c in zip(rows, cells, strict=True)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    centralized = [e for e in plan.entries if e.centralized]
    size = sum(math.prod(e.shape) for e in plan.entries)
    gc_size = sum(math.prod(e.shape) for e in centralized)
    lines.append(
        f"Gradient Centralization on {len(centralized)} of {len(plan.entries)} "
        f"variables ({gc_size:,} of {size:,} parameters)."
    )
    if plan.agc is not None:
        clipped = [e for e in plan.entries if e.clipped]
        lines.append(
            f"Adaptive gradient clipping (λ={plan.agc:g}, ε={plan.agc_eps:g}) "
            f"on {len(clipped)} of {len(plan.entries)} variables."
        )
    if plan.unmatched_include:
        lines.append(f"include patterns that match nothing: {plan.unmatched_include}")
    return "\n".join(lines)
