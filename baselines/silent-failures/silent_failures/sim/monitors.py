"""The monitors a baseline compares, built by name, and the system-metrics monitor.

- ``none``: FedAvg, nothing watched.
- ``system``: FedAvg plus `SystemMonitor`: thresholds on the training loss and on update norms,
  what teams watch on dashboards today. It only alarms; aggregation is FedAvg's.
- ``multikrum`` / ``fedmedian`` / ``fedtrimmedavg``: Flower's robust aggregators (they resist
  outliers but raise no alarm). MultiKrum is told the true number of affected clients, its best
  case; FedTrimmedAvg cuts at least one client from each end.
- ``trust-off`` / ``trust-quarantine`` / ``trust-rollback``: TrustGuard(FedAvg) with that gate,
  configured from the run config's ``trust.*`` keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, MultiKrum, Strategy

from silent_failures.sim.config import BaselineConfig


@dataclass(frozen=True)
class SystemAlarm:
    """One threshold crossing of the system monitor. clients: node ids (empty: population)."""

    round: int
    kind: str  # "loss-rise" | "loss-nonfinite" | "update-norm" | "norm-growth"
    message: str
    clients: tuple[int, ...] = ()
    value: float = math.nan
    threshold: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "kind": self.kind, "message": self.message,
                "clients": list(self.clients), "value": self.value,
                "threshold": self.threshold}


@dataclass
class SystemMonitor:
    """Loss and update-norm thresholds (no statistics, no behavior: today's dashboards).

    loss_rise:   alarm when the round's mean train loss exceeds the best mean so far by this
                 share, or is not finite
    norm_factor: alarm on a client whose update norm exceeds norm_factor x the round's median
                 norm (needs 3+ clients), and when the round's median norm exceeds norm_factor x
                 the first round's
    """

    loss_rise: float = 0.25
    norm_factor: float = 3.0
    alarms: list[SystemAlarm] = field(default_factory=list)
    _best_loss: float = math.inf
    _first_norm: float | None = None

    def observe(self, server_round: int, losses: Mapping[int, tuple[float, float]],
                norms: Mapping[int, float]) -> list[SystemAlarm]:
        """losses: node -> (train loss, weight); norms: node -> update L2 norm."""
        found: list[SystemAlarm] = []
        found += self._loss(server_round, losses)
        found += self._norms(server_round, norms)
        self.alarms += found
        return found

    def _loss(self, rnd: int, losses: Mapping[int, tuple[float, float]]) -> list[SystemAlarm]:
        if not losses:
            return []
        values = np.array([v for v, _ in losses.values()], dtype=float)
        weights = np.array([max(w, 0.0) for _, w in losses.values()], dtype=float)
        if not np.all(np.isfinite(values)):
            bad = tuple(n for n, (v, _) in losses.items() if not math.isfinite(v))
            return [SystemAlarm(rnd, "loss-nonfinite", "train loss is NaN or infinite", bad)]
        mean = float(np.average(values, weights=weights if weights.sum() > 0 else None))
        out = []
        limit = self._best_loss * (1 + self.loss_rise)
        if math.isfinite(self._best_loss) and mean > limit:
            out.append(SystemAlarm(rnd, "loss-rise", f"mean train loss {mean:.3f} is above "
                                   f"{limit:.3f} ({self.loss_rise:.0%} over its best)",
                                   value=mean, threshold=limit))
        self._best_loss = min(self._best_loss, mean)
        return out

    def _norms(self, rnd: int, norms: Mapping[int, float]) -> list[SystemAlarm]:
        finite = {n: v for n, v in norms.items() if math.isfinite(v)}
        if not finite:
            return []
        median = float(np.median(list(finite.values())))
        out = []
        if len(finite) >= 3 and median > 0:
            limit = self.norm_factor * median
            big = tuple(sorted(n for n, v in finite.items() if v > limit))
            if big:
                top = max(finite[n] for n in big)
                out.append(SystemAlarm(rnd, "update-norm", f"{len(big)} update norm(s) above "
                                       f"{self.norm_factor:g} x the median ({top:.3g} > "
                                       f"{limit:.3g})", big, top, limit))
        if self._first_norm is None:
            self._first_norm = median
        elif self._first_norm > 0 and median > self.norm_factor * self._first_norm:
            limit = self.norm_factor * self._first_norm
            out.append(SystemAlarm(rnd, "norm-growth", f"median update norm {median:.3g} is "
                                   f"above {limit:.3g}", value=median, threshold=limit))
        return out


def n_affected(cfg: BaselineConfig, num_clients: int) -> int:
    from silent_failures.sim.scenarios import affected_partitions

    if cfg.scenario == "clean":
        return 0
    return len(affected_partitions(num_clients, cfg.attack_fraction, cfg.seed))


def build_strategy(cfg: BaselineConfig, num_clients: int, run_config: Mapping[str, Any], *,
                   peft_config: Any, run_dir: str) -> Strategy:
    """The server strategy of `cfg.monitor` (without the baseline's RunLedger around it)."""
    common = {"fraction_train": 1.0, "fraction_evaluate": cfg.fraction_evaluate,
              "min_train_nodes": min(2, num_clients), "min_evaluate_nodes": 1,
              "min_available_nodes": min(2, num_clients)}
    f = n_affected(cfg, num_clients)
    if cfg.monitor in ("none", "system"):
        return FedAvg(**common)
    if cfg.monitor == "multikrum":
        return MultiKrum(**common, num_malicious_nodes=f,
                         num_nodes_to_select=max(1, num_clients - f))
    if cfg.monitor == "fedmedian":
        return FedMedian(**common)
    if cfg.monitor == "fedtrimmedavg":
        beta = min(0.49, max(0.2, max(f, 1) / num_clients))
        return FedTrimmedAvg(**common, beta=beta)
    return trust_guard(cfg, run_config, peft_config=peft_config, run_dir=run_dir)


def trust_config(cfg: BaselineConfig, run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The run config's trust.* keys, with the baseline's evaluate settings for the inner
    strategy trust.strategy names (FedAvg by default) where the config sets none."""
    trust_cfg = {k: v for k, v in run_config.items() if k.startswith("trust.")}
    name = str(trust_cfg.get("trust.strategy", "fedavg")).lower()
    trust_cfg.setdefault(f"trust.{name}.fraction-evaluate", cfg.fraction_evaluate)
    trust_cfg.setdefault(f"trust.{name}.min-evaluate-nodes", 1)
    return trust_cfg


def check_trust_config(cfg: BaselineConfig, run_config: Mapping[str, Any]) -> None:
    """A TrustGuard monitor's trust.* keys checked as `trust_guard` will read them, before the
    run clears its folder (an earlier run's results) and loads the model."""
    if cfg.is_trust:
        from flwr_trust.strategies.from_config import check_config

        check_config(trust_config(cfg, run_config))


def trust_guard(cfg: BaselineConfig, run_config: Mapping[str, Any], *, peft_config: Any,
                run_dir: str) -> Strategy:
    """TrustGuard(FedAvg) from the run config's trust.* keys; gate, model, seed and run folder
    come from the baseline's own keys."""
    from flwr_trust.strategies import strategy_from_config
    from silent_failures.sim.probeset import probe_set_folder

    trust_cfg = trust_config(cfg, run_config)
    return strategy_from_config(
        trust_cfg, gate=cfg.gate, model=cfg.model, peft_config=peft_config, run_dir=run_dir,
        seed=cfg.seed, suites=str(probe_set_folder(cfg.probe_items)), server_probe_items=0,
        client_probe_budget=cfg.client_probe_items,
        precision=str(trust_cfg.get("trust.precision", cfg.precision)))
