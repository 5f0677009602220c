"""The shipped sweep (``docs/sweep.csv``, written by ``python -m core sweep --out docs/sweep.csv``) for the
About page: per scenario of the grid, the learned policy's cost against the best rule."""

from __future__ import annotations

from pathlib import Path

from core.evaluation.sweep import learned_versus_best_rule, read_table

SHIPPED_SWEEP = Path(__file__).resolve().parents[2] / "docs" / "sweep.csv"


def shipped_sweep(path: Path = SHIPPED_SWEEP) -> tuple[list[dict[str, object]], int] | None:
    """The learned-vs-best-rule points of the sweep table at ``path`` and its seeds per scenario; None when
    there is no table or it has no learned rows."""
    if not path.is_file():
        return None
    rows = read_table(path)
    points = learned_versus_best_rule(rows)
    return (points, int(rows[0]["seeds"])) if points else None
