"""The one rule for "best": the best epoch of a run, the best configuration of a model on a dataset, the best linear
probe, the configurations successive halving keeps, the best run `grid.py status` shows.

The paper keeps "the best performing model on the validation set" (the selection split): the highest value of the
dataset's metric wins. Two details every chooser shares, so that the same records give the same choice whichever
script reads them:
  * a value that is not a finite number (None, NaN: a metric undefined on those predictions, such as AUC with one
    class) never wins and never blocks a later candidate;
  * a tie goes to the first candidate in a stable order: the earlier epoch of a run, the smaller run id of a grid
    (never the order files happen to be listed or configurations planned in).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Candidate = TypeVar("Candidate")


def finite(value: Any) -> float | None:
    """The value as a float when it is a finite number, else None (None, NaN, inf, booleans, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def better(value: Any, than: Any) -> bool:
    """Whether `value` beats the best so far (`than`, None when there is none): strictly higher and finite, so
    that on a tie the earlier candidate stays."""
    value, than = finite(value), finite(than)
    return value is not None and (than is None or value > than)


def ranked(candidates: Iterable[Candidate], value: Callable[[Candidate], Any],
           order: Callable[[Candidate], Any]) -> list[Candidate]:
    """The candidates with a finite value, best first; ties in `order` (e.g. the run id)."""
    scored = [(finite(value(c)), c) for c in candidates]
    return [c for v, c in sorted(((v, c) for v, c in scored if v is not None), key=lambda vc: (-vc[0], order(vc[1])))]


def best_of(candidates: Iterable[Candidate], value: Callable[[Candidate], Any],
            order: Callable[[Candidate], Any]) -> Candidate | None:
    """The best candidate (see the module docstring), or None when none has a finite value."""
    best = ranked(candidates, value, order)
    return best[0] if best else None
