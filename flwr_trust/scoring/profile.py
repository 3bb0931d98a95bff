"""BehaviorProfile: per mode, per metric, a value with its standard error and n, plus suite hashes.

It serializes to JSON (reports, the CLI) and to a flat ``trust.<mode>.<metric>`` dict that fits a
Flower MetricRecord (keys: flwr_trust.protocol). Per-group metrics are named
``<metric>/<group>``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flwr_trust import protocol

Direction = Literal["higher", "lower"]
"""Which direction of a metric is a degradation (each metric declares it: flwr_trust.modes)."""


@dataclass(frozen=True)
class MetricValue:
    """One measured metric. `worse` says which direction is a degradation.

    items: for a metric that is the mean over probe items, each item's value in suite order
    (the detectors pair them with the same items' values of another model: docs/detection.md);
    None for metrics that are no item mean (ECE, gaps between groups).
    """

    value: float
    stderr: float
    n: int
    worse: Direction = "higher"
    items: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "stderr": self.stderr, "n": self.n,
                               "worse": self.worse}
        if self.items is not None:
            out["items"] = [round(float(x), 7) for x in self.items]
        return out


def metric_key(name: str) -> str:
    """Sanitize a metric (or group) name for use in a flat key: lowercase, [a-z0-9-/_]."""
    return re.sub(r"[^a-z0-9/_-]+", "-", name.lower()).strip("-")


@dataclass
class BehaviorProfile:
    """What a model did on a set of probe suites."""

    metrics: dict[str, dict[str, MetricValue]]
    suite_hashes: dict[str, str]
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def suite_hash(self) -> str:
        from flwr_trust.probes.suite import combined_hash

        return combined_hash(self.suite_hashes)

    def get(self, mode: str, metric: str) -> MetricValue | None:
        return self.metrics.get(mode, {}).get(metric)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "suite_hash": self.suite_hash,
            "suite_hashes": dict(self.suite_hashes),
            "metrics": {mode: {name: mv.to_json() for name, mv in ms.items()}
                        for mode, ms in self.metrics.items()},
            "extra": self.extra,
        }

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BehaviorProfile:
        metrics = {mode: {name: MetricValue(float(m["value"]), float(m["stderr"]), int(m["n"]),
                                            m.get("worse", "higher"),
                                            tuple(map(float, m["items"])) if "items" in m
                                            else None)
                          for name, m in ms.items()}
                   for mode, ms in data["metrics"].items()}
        return cls(metrics, dict(data["suite_hashes"]), data.get("model", ""),
                   data.get("extra", {}))

    def to_metric_dict(self) -> dict[str, int | float]:
        """Flat ``trust.*`` numbers for a Flower MetricRecord (NaN-free: undefined values are
        left out, since a MetricRecord consumer cannot tell NaN from a bug)."""
        out: dict[str, int | float] = {protocol.SUITE_HASH: protocol.hash_to_int(self.suite_hash)}
        for mode, ms in self.metrics.items():
            for name, mv in ms.items():
                if not math.isfinite(mv.value):
                    continue
                key = protocol.metric_key(mode, name)
                out[key] = float(mv.value)
                out[key + protocol.STDERR] = float(mv.stderr) if math.isfinite(mv.stderr) else 0.0
                out[key + protocol.N] = int(mv.n)
        return out

    def format_table(self) -> str:
        """A readable table: mode, metric, value ± stderr, n, and which direction is worse."""
        rows = [("mode", "metric", "value ± stderr", "n", "worse if")]
        for mode, ms in self.metrics.items():
            for name, mv in ms.items():
                rows.append((mode, name, f"{mv.value:.4f} ± {mv.stderr:.4f}", str(mv.n), mv.worse))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
