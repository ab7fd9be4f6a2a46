"""Search spaces of ``unlearnkit tune``, declared per method next to (not inside) each config.

Every entry names a config field, its range and scale (log or linear), optionally the values of another field it
depends on (``when``), and the source of the range: ``official`` (the official code's own grid), ``paper`` or
``ours`` (a range we chose around the paper's or official default, which it always contains). Ranges are over the
values users may pass with ``--set`` and must pass the config's own validators (tests/test_spaces.py samples them).

Not tunable, by design: ``gradtau`` (it derives every setting from the data sizes and is the untuned reference of
every tune report) and ``retrain`` (the reference itself; its fields are the training recipe).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["NOT_TUNABLE", "SPACES", "Param", "active", "sample_random", "space_of"]


@dataclass(frozen=True)
class Param:
    """One searched field: ``low``/``high`` for ``float``/``int`` (``log`` scale or linear), ``choices`` for
    ``categorical``; sampled only when every ``when`` field holds one of its listed values."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    source: str = "ours"

    def check(self, method: str) -> None:
        where = f"search space of {method}, field {self.name!r}"
        if self.kind not in ("float", "int", "categorical"):
            raise ConfigError(f"{where}: kind must be float, int or categorical, got {self.kind!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError(f"{where}: a categorical field needs at least one choice")
        elif not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"{where}: need finite low < high, got [{self.low}, {self.high}]")
        elif self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log-scale range needs low > 0, got {self.low}")
        if self.source not in ("official", "paper", "ours"):
            raise ConfigError(f"{where}: source must be official, paper or ours, got {self.source!r}")


def _lr(lo: float, hi: float, **kw: Any) -> Param:
    return Param("lr", "float", lo, hi, log=True, **kw)


def _epochs(lo: int, hi: int) -> Param:
    return Param("epochs", "int", lo, hi)


SPACES: dict[str, tuple[Param, ...]] = {
    "finetune": (_lr(1e-3, 0.1), _epochs(1, 10)),
    "gradient_ascent": (_lr(1e-5, 1e-2), _epochs(1, 10), Param("mode", "categorical", choices=("eval", "train")),
                        Param("max_norm", "float", 0.01, 1.0, log=True, when={"mode": ("eval",)})),
    "neggrad_plus": (_lr(1e-3, 0.1), _epochs(1, 10), Param("beta", "float", 0.5, 0.999)),
    "random_label": (_lr(1e-3, 0.1), _epochs(1, 10)),
    "amnesiac": (_lr(1e-3, 0.1), _epochs(1, 10)),
    "bad_teacher": (_lr(1e-4, 0.1), _epochs(1, 5), Param("temperature", "float", 1.0, 8.0)),
    "cf_k": (_lr(1e-3, 0.1), _epochs(1, 10), Param("k", "int", 1, 2)),
    "eu_k": (_lr(1e-3, 0.1), _epochs(1, 10), Param("k", "int", 1, 2)),
    "scrub": (_lr(1e-4, 0.1), _epochs(2, 10), Param("msteps", "int", 1, 2), Param("alpha", "float", 0.01, 1.0,
                                                                                  log=True)),
    "salun": (_lr(1e-3, 0.1), _epochs(1, 10), Param("mask_fraction", "float", 0.1, 0.9)),
    "sfron": (_lr(1e-3, 0.1), Param("retain_epochs", "float", 0.25, 8.0, log=True),
              Param("forget_alpha", "float", 1.0, 100.0, log=True), Param("max_norm", "float", 0.5, 10.0, log=True)),
    "ssd": (Param("alpha", "float", 1.0, 100.0, log=True), Param("lam", "float", 0.1, 10.0, log=True)),
    "fisher": (Param("alpha", "float", 1e-8, 1e-4, log=True),),
    # The official tune_our.py grid spans alpha_r 10..1000 and alpha_f 1..100 (spec section 1 step 6).
    "svd": (Param("alpha_r", "float", 10.0, 1000.0, log=True, source="official"),
            Param("alpha_f", "float", 1.0, 100.0, log=True, source="official")),
    "unsir": (Param("impair_lr", "float", 1e-3, 0.05, log=True), Param("repair_lr", "float", 1e-4, 0.02, log=True),
              Param("noise_batch", "int", 4, 256, log=True)),
    "pgu": (Param("step", "categorical", choices=("sgd", "normalized")),
            Param("lr_start", "float", 0.01, 0.5, log=True), Param("eps", "float", 0.8, 0.99)),
    "pgu_official": (Param("lr_start", "float", 0.01, 0.5, log=True), Param("eps", "float", 0.8, 0.99)),
}

NOT_TUNABLE: dict[str, str] = {
    "gradtau": "derives every setting from the data sizes; the untuned reference of every tune report",
    "retrain": "the retrained reference itself (its fields are the training recipe)",
}


def space_of(method: str) -> tuple[Param, ...]:
    """``method``'s declared space, checked; a :class:`ConfigError` saying why if it has none."""
    if method in NOT_TUNABLE:
        raise ConfigError(f"{method} has no search space: it {NOT_TUNABLE[method]}")
    if method not in SPACES:
        raise ConfigError(f"{method} has no declared search space (methods with one: {', '.join(sorted(SPACES))})")
    space = SPACES[method]
    for p in space:
        p.check(method)
    return space


def active(p: Param, values: dict[str, Any]) -> bool:
    """Whether ``p``'s conditions hold for the values sampled so far."""
    return all(values.get(k) in vs for k, vs in p.when.items())


def sample_random(space: tuple[Param, ...], rng: random.Random) -> dict[str, Any]:
    """One point of ``space`` drawn at random (for tests; ``tune`` samples with Optuna)."""
    out: dict[str, Any] = {}
    for p in space:
        if not active(p, out):
            continue
        if p.kind == "categorical":
            out[p.name] = rng.choice(p.choices)
        elif p.kind == "int":
            out[p.name] = (int(round(math.exp(rng.uniform(math.log(p.low), math.log(p.high))))) if p.log
                           else rng.randint(int(p.low), int(p.high)))
        else:
            out[p.name] = math.exp(rng.uniform(math.log(p.low), math.log(p.high))) if p.log \
                else rng.uniform(p.low, p.high)
    return out
