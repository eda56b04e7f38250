"""FLOPs as exact functions of sequence length, pinned by fvcore counts at a few lengths.

Why: a prompt's forward costs more per token the longer the prompt (attention's T x T score
matrix; the Mamba-2 chunked scan pads the prompt to whole chunks and relates every pair of
chunks), and a decode step's attention reads every cached position. Tracing every length a run
meets is slow at 7B shapes, but these counts are sums of known forms in the length T:

  polynomial: a + b T + c T^2                                (decoder layers, plain classifiers)
  chunked:    a + b T + c n + d n^2,  n = ceil(T / chunk)      (Mamba-2 mixers, chunk-padded scan)
  extend:     a + b m + c m t + d m^2, length (t, m), m >= 2  (a Transformer layer over m new positions
                                                               after t cached: self-speculative verification;
                                                               m = 1 is a decode step, whose mask is none)

The coefficients solve the fvcore counts at as many lengths as there are terms (exact rational
arithmetic); counts at further lengths check them. A model that reproduces every check count to
the flop is `exact`; else it keeps its largest relative error and the ledger calls its counts
estimates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

FORMS = ("polynomial", "chunked", "extend")
Length = int | tuple[int, int]  # a length, or (cached positions, new positions) for the extend form


def _terms(form: str, degree: int, chunk: int | None, length: Length) -> list[int]:
    if form == "polynomial":
        return [length**power for power in range(degree + 1)]
    if form == "extend":
        cached, new = length
        return [1, new, new * cached, new * new]
    n = math.ceil(length / chunk)
    return [1, length, n, n * n]


def _key(length: Length) -> str:
    return ",".join(map(str, length)) if isinstance(length, tuple) else str(length)


def _length(key: str) -> Length:
    return tuple(int(part) for part in key.split(",")) if "," in key else int(key)


def _solve(rows: list[list[int]], values: list[int]) -> list[Fraction]:
    """Gauss-Jordan elimination over the rationals: the exact solution of rows @ x = values."""
    size = len(rows)
    matrix = [[Fraction(v) for v in row] + [Fraction(value)] for row, value in zip(rows, values)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if matrix[r][col] != 0), None)
        if pivot is None:
            raise ValueError("the fit lengths do not determine the length model (singular system); pick other lengths")
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        for r in range(size):
            if r != col and matrix[r][col] != 0:
                factor = matrix[r][col] / matrix[col][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[col])]
    return [matrix[i][size] / matrix[i][i] for i in range(size)]


@dataclass(frozen=True)
class LengthModel:
    """FLOPs of one block as a function of a length (prompt tokens, or cached positions for a
    decode step). `counts` holds the fvcore count at every length it was fitted or checked at."""

    form: str
    coefficients: tuple[Fraction, ...]
    degree: int = 2
    chunk: int | None = None
    counts: tuple[tuple[Length, int], ...] = ()
    exact: bool = True
    max_relative_error: float = 0.0
    valid_below: int | None = None  # e.g. a sliding window, past which the form changes (extend: t + m)

    def __call__(self, length: Length) -> int:
        if (self.form == "extend") != isinstance(length, tuple):
            raise ValueError(f"length model of form {self.form!r}: a length (t, m) goes with the extend form only")
        extent = sum(length) if isinstance(length, tuple) else length
        if isinstance(length, tuple) and (length[0] < 0 or length[1] < 1):
            raise ValueError(f"length model: an extend length (t, m) needs t >= 0 cached and m >= 1 new, got {length}")
        if not isinstance(length, tuple) and length < 1:
            raise ValueError(f"length model: length must be >= 1, got {length}")
        if self.valid_below is not None and extent >= self.valid_below:
            raise ValueError(
                f"length {extent} is past {self.valid_below}, where this block's cost changes form (a sliding "
                "window); the flops rule has no count there: shorten the prompts or extend dynamax_bench/costs/lengths.py"
            )
        value = sum(c * t for c, t in zip(self.coefficients, _terms(self.form, self.degree, self.chunk, length)))
        return round(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form, "degree": self.degree, "chunk": self.chunk,
            "coefficients": [str(c) for c in self.coefficients],
            "counts": {_key(length): flops for length, flops in self.counts},
            "exact": self.exact, "max_relative_error": self.max_relative_error, "valid_below": self.valid_below,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LengthModel:
        return cls(
            form=data["form"], degree=data["degree"], chunk=data["chunk"],
            coefficients=tuple(Fraction(c) for c in data["coefficients"]),
            counts=tuple((_length(length), flops) for length, flops in data["counts"].items()),
            exact=data["exact"], max_relative_error=data["max_relative_error"], valid_below=data["valid_below"],
        )


def default_lengths(form: str, degree: int, chunk: int | None, around: int) -> tuple[list[Length], list[Length]]:
    """Fit and check lengths: distinct, non-degenerate for the form, and one check at `around`
    (the table's reference length) so the model reproduces the count Table 1 shows."""
    if form == "extend":  # (cached, new >= 2): one new position is a decode step (its own model, no mask)
        fit = [(8, 2), (8, 3), (16, 2), (16, 4)]
        checks = [(24, 2), (40, 5), (around, 2), (around, 9)]
        return fit, checks
    if form == "chunked":
        half = max(1, chunk // 2)
        fit = [half, chunk, chunk + 1, 2 * chunk + half]
        checks = [half + 1, 3 * chunk + 1]
    else:
        fit = [8 * (i + 1) for i in range(degree + 1)]
        checks = [8 * (degree + 1) + 4, 8 * (degree + 3)]
    checks = sorted(set(checks + [around]) - set(fit))
    return fit, checks


def fit_length_model(count: Callable[[Length], int], form: str, *, degree: int = 2, chunk: int | None = None,
                     around: int, valid_below: int | None = None,
                     lengths: tuple[Sequence[Length], Sequence[Length]] | None = None) -> LengthModel:
    """Fit a block's length model from `count(length)` (an fvcore count) and check it."""
    if form not in FORMS or (form == "chunked" and not chunk):
        raise ValueError(f"length model form {form!r} (chunk {chunk}): use one of {FORMS}, chunked with a chunk size")
    fit, checks = lengths or default_lengths(form, degree, chunk, around)
    counted = {length: count(length) for length in [*fit, *checks]}
    coefficients = _solve([_terms(form, degree, chunk, t) for t in fit], [counted[t] for t in fit])
    model = LengthModel(form, tuple(coefficients), degree, chunk, valid_below=valid_below)
    errors = [abs(model(t) - counted[t]) / max(1, counted[t]) for t in checks]
    return LengthModel(form, tuple(coefficients), degree, chunk, tuple(sorted(counted.items())),
                       exact=all(e == 0 for e in errors), max_relative_error=max(errors, default=0.0),
                       valid_below=valid_below)
