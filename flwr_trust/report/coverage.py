"""Why the report has no data for something, when the log shows the reason: a panel left empty
and a NO DATA status say it ("needs >= 3 clients per round (this run had 2)") instead of
leaving the reader to guess between a fault and a limit of the method.
"""

from __future__ import annotations

from flwr_trust import protocol
from flwr_trust.detect.statistics import MIN_CLIENTS
from flwr_trust.report.records import SYSTEM_LOSS_KEYS, num
from flwr_trust.report.runlog import RunLog


def clients_had(counts: list[int]) -> str:
    """"2" or "1-2": the clients per round a run had."""
    lo, hi = min(counts, default=0), max(counts, default=0)
    return str(hi) if lo == hi else f"{lo}-{hi}"


def update_gap(run: RunLog) -> str:
    """Why no update statistics (per-client norms and cosines) were recorded."""
    if run.start.secure_aggregation:
        return ("secure aggregation: the server sees only the sum of the updates, so it "
                "cannot check single clients' updates")
    counts = [len(p.clients.valid) for p in run.phase("train")]
    if not counts:
        return "no train round in the verified records"
    if max(counts) < MIN_CLIENTS:
        return (f"needs >= {MIN_CLIENTS} clients per round (this run had "
                f"{clients_had(counts)})")
    return "no update statistics recorded"


def behavior_gap(run: RunLog, mode: str) -> str:
    """Why a behavioral mode has no global value in any verified round."""
    if not run.rounds:
        return "no round in the verified records"
    if mode in run.start.server_suites:
        return "the server probes it, but its probe gave no usable value"
    reporting = [_reporting(run, mode, i) for i in range(len(run.rounds))]
    prefix = "not probed by the server; "
    if not any(reporting):
        return prefix + "no client reported it (do the clients run trust_mod with this mode?)"
    if max(reporting) < MIN_CLIENTS:
        return (prefix + f"the clients' median needs >= {MIN_CLIENTS} clients reporting per "
                f"round (this run had {clients_had([k for k in reporting if k])})")
    return prefix + "the clients' reports gave no usable value"


def _reporting(run: RunLog, mode: str, i: int) -> int:
    """How many clients reported a finite value of one of mode's metrics in round record i."""
    start = protocol.metric_key(mode, "")
    return sum(any(key.startswith(start) and not key.endswith(protocol.SUFFIXES)
                   and num(value) is not None for key, value in flat.items())
               for flat in run.rounds[i].client_metrics.values())


def loss_gap() -> str:
    """Why the loss panel is empty."""
    return ("no loss: the aggregated train metrics have none of "
            + ", ".join(SYSTEM_LOSS_KEYS))
