"""The guard's decision core, Flower-free: round evidence in, a gate decision out.

`Guard` (core.py) decides with gate policies (gates.py) and records (recorder.py); the adapter
`flwr_trust.strategies.TrustGuard` feeds it `RoundEvidence` and implements `Aggregation` over
the inner Flower strategy (evidence.py).
"""

from flwr_trust.guard.core import LOO_MAX_CLIENTS, Guard, GuardSettings
from flwr_trust.guard.evidence import Aggregation, Prober, Reply, RoundEvidence, RoundOutcome
from flwr_trust.guard.gates import GATES, GateDecision, TrustHalt, make_gate
from flwr_trust.guard.recorder import GuardRecorder

__all__ = ["GATES", "LOO_MAX_CLIENTS", "Aggregation", "GateDecision", "Guard", "GuardRecorder",
           "GuardSettings", "Prober", "Reply", "RoundEvidence", "RoundOutcome", "TrustHalt",
           "make_gate"]
