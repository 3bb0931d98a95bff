"""What one baseline run showed: the monitor's alarms judged against the ground truth.

- detected: the monitor alarmed in a round >= onset (never, for the clean scenario);
- rounds_to_detect: first such round minus the onset round (0 = in the onset round);
- false_alarm: an alarm before the onset, or any alarm in a clean run;
- alarm modes: the modes whose alarms came in rounds >= onset (who caught it);
- culprit precision: of the clients the monitor named after the onset (alarm attributions,
  quarantined clients, rollback culprits, victims of a fairness alarm), the share that the
  scenario affected (None when it named nobody);
- behavior change: final minus reference value of the scenario's target metric (ground truth).

Robust aggregators and FedAvg raise no alarms, so they are never "detected"; their behavior change
still shows whether they resisted the failure.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from silent_failures.sim.config import BaselineConfig
from silent_failures.sim.groundtruth import Measurement
from silent_failures.sim.ledger import RunLedger
from silent_failures.sim.scenarios import SCENARIOS, affected_partitions

SUMMARY_JSON = "summary.json"


@dataclass
class RunOutcome:
    """One run's row material (see the module docstring); partitions, not node ids."""

    scenario: str
    monitor: str
    seed: int
    model: str
    num_clients: int
    rounds: int
    onset: int
    affected: list[int]
    target: str
    reference: dict[str, float]
    final: dict[str, float]
    alarms: list[dict[str, Any]] = field(default_factory=list)
    system_shadow: list[dict[str, Any]] = field(default_factory=list)
    gate_actions: list[dict[str, Any]] = field(default_factory=list)
    per_round: list[dict[str, Any]] = field(default_factory=list)
    epsilon: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    run_dir: str = ""
    report: str = ""
    scenario_data: int = 1  # Scenario.data when it ran; summaries written before it: 1

    # -- derived -------------------------------------------------------------------------------
    @property
    def clean(self) -> bool:
        return self.scenario == "clean"

    @property
    def first_alarm_after_onset(self) -> int | None:
        rounds = [a["round"] for a in self.alarms if a["round"] >= self.onset]
        return None if self.clean or not rounds else min(rounds)

    @property
    def detected(self) -> bool:
        return self.first_alarm_after_onset is not None

    @property
    def rounds_to_detect(self) -> int | None:
        first = self.first_alarm_after_onset
        return None if first is None else first - self.onset

    @property
    def false_alarm(self) -> bool:
        return any(self.clean or a["round"] < self.onset for a in self.alarms)

    @property
    def flagged(self) -> list[int]:
        named = {p for a in self.alarms if a["round"] >= self.onset for p in a["clients"]}
        named |= {p for g in self.gate_actions if g["round"] >= self.onset
                  for p in g.get("excluded", []) + g.get("culprits", [])}
        return sorted(named)

    @property
    def alarm_modes(self) -> list[str]:
        """The modes whose alarms came in rounds >= onset (e.g. "update", "alignment")."""
        return sorted({a.get("mode", "?") for a in self.alarms if a["round"] >= self.onset})

    @property
    def culprit_precision(self) -> float | None:
        flagged = self.flagged
        if not flagged:
            return None
        return len(set(flagged) & set(self.affected)) / len(flagged)

    @property
    def behavior_change(self) -> float:
        final, ref = self.final.get("target"), self.reference.get("target")
        return math.nan if final is None or ref is None else final - ref

    @property
    def system_shadow_alarmed(self) -> bool:
        return any(a["round"] >= self.onset for a in self.system_shadow)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out |= {"detected": self.detected, "rounds_to_detect": self.rounds_to_detect,
                "false_alarm": self.false_alarm, "flagged": self.flagged,
                "alarm_modes": self.alarm_modes,
                "culprit_precision": self.culprit_precision,
                "behavior_change": self.behavior_change}
        return out

    def save(self, folder: Path) -> Path:
        path = folder / SUMMARY_JSON
        path.write_text(json.dumps(_finite(self.to_json()), indent=1) + "\n", encoding="utf-8")
        return path


def as_system_run(outcome: RunOutcome) -> RunOutcome:
    """The "system" monitor's outcome from a "none" run: FedAvg trains identically under both
    (the system monitor never acts), and the RunLedger ran the same SystemMonitor in both."""
    if outcome.monitor != "none":
        raise ValueError(f"as_system_run needs a 'none' run, got {outcome.monitor!r}")
    alarms = [{"round": a["round"], "mode": "system", "metric": a["kind"],
               "message": a["message"], "clients": list(a.get("clients", []))}
              for a in outcome.system_shadow]
    return replace(outcome, monitor="system", alarms=alarms)


def from_json(data: dict[str, Any]) -> RunOutcome:
    """A RunOutcome from its summary.json (derived fields are recomputed, not read)."""
    names = {f.name for f in fields(RunOutcome)}
    return RunOutcome(**{k: v for k, v in data.items() if k in names})


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity (None instead)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def monitor_alarms(cfg: BaselineConfig, strategy: Any, ledger: RunLedger) -> list[dict[str, Any]]:
    """The monitor's own alarms, clients as partitions: TrustGuard's (severity "alarm") for the
    trust-* monitors, the SystemMonitor's for "system", none for the others."""
    to_part = ledger.node_partition
    if cfg.monitor == "system":
        return [{"round": a.round, "mode": "system", "metric": a.kind, "message": a.message,
                 "clients": sorted(to_part.get(n, -1) for n in a.clients)}
                for a in ledger.system.alarms]
    if not cfg.is_trust:
        return []
    out = []
    for a in strategy.alarms:
        if a.severity != "alarm":
            continue
        nodes = set(a.clients) | {int(v) for v in a.evidence.get("victims", [])
                                  if str(v).lstrip("-").isdigit()}
        out.append({"round": a.round, "mode": a.mode, "metric": a.metric,
                    "message": a.message, "clients": sorted(to_part.get(n, -1) for n in nodes)})
    return out


def gate_actions(cfg: BaselineConfig, strategy: Any, ledger: RunLedger) -> list[dict[str, Any]]:
    if not cfg.is_trust:
        return []
    to_part = ledger.node_partition
    out = []
    for h in strategy.history:
        if h.gate.action == "accept":
            continue
        out.append({"round": h.round, "action": h.gate.action,
                    "excluded": sorted(to_part.get(n, -1) for n in h.gate.excluded),
                    "culprits": sorted(to_part.get(n, -1) for n in h.gate.culprits)})
    return out


def per_round(ledger: RunLedger) -> list[dict[str, Any]]:
    """Per train round: mean loss, median and max update norm, system alarms (the dashboard)."""
    rows = []
    for r in ledger.rounds:
        if r["phase"] != "train":
            continue
        clients = r["clients"].values()
        losses = [c["loss"] for c in clients if c.get("loss") is not None]
        norms = sorted(c["norm"] for c in clients if math.isfinite(c.get("norm", math.nan)))
        rows.append({"round": r["round"],
                     "loss": sum(losses) / len(losses) if losses else None,
                     "norm_median": statistics.median(norms) if norms else None,
                     "norm_max": norms[-1] if norms else None,
                     "system_alarms": len(r["system_alarms"]), "accepted": r["accepted"],
                     "client_seconds": r.get("client_seconds"),
                     "server_seconds": r.get("server_seconds")})
    return rows


def mark_refused(rounds: list[dict[str, Any]], actions: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """`accepted` = the round's own aggregate became the global model. The strategy returns a
    model in a rolled-back or halted round too (the previous one, kept), so that alone is not
    acceptance."""
    refused = {g["round"] for g in actions if g["action"] in ("rollback", "halt")}
    return [r | {"accepted": bool(r["accepted"]) and r["round"] not in refused} for r in rounds]


def build_outcome(cfg: BaselineConfig, strategy: Any, ledger: RunLedger, num_clients: int,
                  reference: Measurement, final: Measurement, seconds: float,
                  run_dir: Path) -> RunOutcome:
    epsilon: dict[str, float] = {}
    for r in ledger.rounds:
        for c in r["clients"].values():
            if "epsilon" in c and c.get("partition") is not None:
                epsilon[str(c["partition"])] = c["epsilon"]
    affected = [] if cfg.scenario == "clean" else affected_partitions(
        num_clients, cfg.attack_fraction, cfg.seed)
    actions = gate_actions(cfg, strategy, ledger)
    rounds = mark_refused(per_round(ledger), actions)
    return RunOutcome(
        scenario=cfg.scenario, monitor=cfg.monitor, seed=cfg.seed, model=cfg.model,
        num_clients=num_clients, rounds=cfg.num_server_rounds, onset=cfg.onset_round,
        affected=affected, target=".".join(SCENARIOS[cfg.scenario].target),
        reference=reference.to_json(), final=final.to_json(),
        alarms=monitor_alarms(cfg, strategy, ledger),
        system_shadow=[{"round": a.round, "kind": a.kind, "message": a.message,
                        "clients": sorted(ledger.node_partition.get(n, -1) for n in a.clients)}
                       for a in ledger.system.alarms],
        gate_actions=actions, per_round=rounds,
        epsilon=epsilon, wall_seconds=round(seconds, 2), run_dir=str(run_dir),
        scenario_data=SCENARIOS[cfg.scenario].data)
