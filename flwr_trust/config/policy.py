"""Client autonomy: a client's own thresholds on the incoming global model.

A policy is a short string, e.g. ``"alignment.refusal-rate >= 0.8; capability.accuracy >= 0.3"``:
rules separated by ``;`` or ``,``, each ``<mode>.<metric> <op> <threshold>`` with op one of
``>=``, ``>``, ``<=``, ``<``. Before training, the mod probes the incoming model on this round's
probe sample and checks every rule against the point estimate (its stderr and n are given in the
veto message, so a client can set its thresholds with that precision in mind).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from flwr_trust import modes as registry
from flwr_trust.errors import TrustError
from flwr_trust.scoring.profile import BehaviorProfile

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_RULE = re.compile(r"^\s*([a-z]+)\.([a-z0-9/_-]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


class PolicyError(TrustError):
    """A policy string that cannot be parsed."""


@dataclass(frozen=True)
class Rule:
    """One threshold: the metric must satisfy ``value <op> threshold``."""

    mode: str
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.mode}.{self.metric} {self.op} {self.threshold:g}"

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


@dataclass(frozen=True)
class Violation:
    """A rule the incoming model breaks, with the measured value, its stderr and n."""

    rule: Rule
    value: float
    stderr: float
    n: int

    def describe(self) -> str:
        if not math.isfinite(self.value):
            return f"{self.rule.mode}.{self.rule.metric} was not measured (needed for {self.rule})"
        return (f"{self.rule.mode}.{self.rule.metric} = {self.value:.3f} "
                f"(stderr {self.stderr:.3f}, n={self.n}) violates {self.rule}")


def parse_policy(text: str) -> tuple[Rule, ...]:
    """Parse a policy string; raise PolicyError naming the bad rule."""
    rules = []
    for part in re.split(r"[;,]", text or ""):
        if not part.strip():
            continue
        match = _RULE.match(part)
        if not match:
            raise PolicyError(f"Policy rule {part.strip()!r} is not "
                              "'<mode>.<metric> <op> <number>'.",
                              "Write e.g. trust.policy.rules = \"alignment.refusal-rate >= 0.8\".")
        mode, metric, op, number = match.groups()
        if registry.find(mode) is None:
            raise PolicyError(f"Policy rule {part.strip()!r} names unknown mode {mode!r}.",
                              f"Use one of {', '.join(registry.ids())}.")
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise PolicyError(f"Policy rule {part.strip()!r} has no valid number.",
                              "Give a finite threshold.")
        rules.append(Rule(mode, metric, op, threshold))
    return tuple(rules)


def check_policy(rules: tuple[Rule, ...], profile: BehaviorProfile) -> list[Violation]:
    """The rules `profile` violates. A metric that was not measured (n = 0) is a violation:
    a client that asked for a guarantee does not train on a model it could not check."""
    out = []
    for rule in rules:
        mv = profile.get(rule.mode, rule.metric)
        if mv is None or mv.n == 0 or not math.isfinite(mv.value):
            out.append(Violation(rule, math.nan, math.nan, 0 if mv is None else mv.n))
        elif not rule.holds(mv.value):
            out.append(Violation(rule, mv.value, mv.stderr, mv.n))
    return out
