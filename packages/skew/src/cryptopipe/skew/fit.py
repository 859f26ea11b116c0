"""Least squares over running sums: offset, frequency drift and one clock step.

The clock model of the samples in the fit window is ``y = a + b·x + c·d``: ``y`` the sample's
offset (ms, relative to a fixed origin), ``x`` its local time (s), ``d`` 1 after the last step
and 0 before. ``b`` is the drift in ms/s (1 ppm = 0.001 ms/s). Only sums are kept, added as an
interval enters the window and taken away as it leaves, so a fit over thousands of samples costs
a few dozen operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The sums kept: n, Σx, Σy, Σx², Σxy, Σy².
SUMS = 6


def sums_of(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, ...]:
    """One interval's (n, Σx, Σy, Σx², Σxy, Σy²)."""
    return (
        float(len(xs)),
        math.fsum(xs),
        math.fsum(ys),
        math.fsum(x * x for x in xs),
        math.fsum(x * y for x, y in zip(xs, ys, strict=True)),
        math.fsum(y * y for y in ys),
    )


class Moments:
    """Running sums over the window, for all samples and for those after the step."""

    def __init__(self) -> None:
        self.all = [0.0] * SUMS
        self.after = [0.0] * SUMS

    def add(self, sums: Sequence[float], after_step: bool, sign: float = 1.0) -> None:
        for i, value in enumerate(sums):
            self.all[i] += sign * value
            if after_step:
                self.after[i] += sign * value


@dataclass(frozen=True, slots=True)
class Fit:
    """The solved model: coefficients, their covariance and the residual variance (ms²)."""

    coefficients: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    residual_var: float
    n: int
    drift: bool
    step: bool

    def _basis(self, x: float) -> list[float]:
        return [1.0, *([x] if self.drift else []), *([1.0] if self.step else [])]

    def predict(self, x: float) -> float:
        """The offset (ms, from the origin) at local time ``x`` in the current (post-step) regime."""
        return sum(c * g for c, g in zip(self.coefficients, self._basis(x), strict=True))

    def predict_var(self, x: float) -> float:
        """The variance (ms²) of :meth:`predict` at ``x``."""
        g = self._basis(x)
        cov = self.covariance
        return max(0.0, sum(g[i] * cov[i][j] * g[j] for i in range(len(g)) for j in range(len(g))))

    @property
    def intercept(self) -> float:
        """The line's value at x = 0 in the current regime (step included)."""
        return self.coefficients[0] + (self.coefficients[-1] if self.step else 0.0)

    @property
    def slope(self) -> float:
        return self.coefficients[1] if self.drift else 0.0

    @property
    def slope_var(self) -> float:
        return self.covariance[1][1] if self.drift else 0.0


def solve(moments: Moments, *, drift: bool) -> Fit | None:
    """Least squares on ``moments``; None when underdetermined or singular."""
    n, sx, sy, sxx, sxy, syy = moments.all
    dn, dsx, dsy = moments.after[0], moments.after[1], moments.after[2]
    step = 0.5 < dn < n - 0.5
    names = ["1", *(["x"] if drift else []), *(["d"] if step else [])]
    if n <= len(names):
        return None
    cross = {"11": n, "1x": sx, "1d": dn, "xx": sxx, "xd": dsx, "dd": dn}
    with_y = {"1": sy, "x": sxy, "d": dsy}
    xtx = [[cross.get(a + b, cross.get(b + a, 0.0)) for b in names] for a in names]
    xty = [with_y[a] for a in names]
    inverse = _invert(xtx)
    if inverse is None:
        return None
    size = len(names)
    coefficients = [math.fsum(inverse[i][j] * xty[j] for j in range(size)) for i in range(size)]
    sse = max(0.0, syy - math.fsum(c * v for c, v in zip(coefficients, xty, strict=True)))
    residual_var = sse / (n - size)
    covariance = tuple(tuple(residual_var * v for v in row) for row in inverse)
    return Fit(tuple(coefficients), covariance, residual_var, round(n), drift, step)


def _invert(matrix: list[list[float]]) -> list[list[float]] | None:
    """Gauss-Jordan inverse of a small matrix; None when (nearly) singular."""
    size = len(matrix)
    aug = [list(row) + [1.0 if i == j else 0.0 for j in range(size)] for i, row in enumerate(matrix)]
    scale = max(abs(v) for row in matrix for v in row) or 1.0
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(aug[r][col]))
        if abs(aug[pivot][col]) <= 1e-13 * scale:
            return None
        aug[col], aug[pivot] = aug[pivot], aug[col]
        factor = aug[col][col]
        aug[col] = [v / factor for v in aug[col]]
        for r in range(size):
            if r != col and aug[r][col]:
                other = aug[r][col]
                aug[r] = [v - other * p for v, p in zip(aug[r], aug[col], strict=True)]
    return [row[size:] for row in aug]
