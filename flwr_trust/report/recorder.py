"""Write what the guard saw and did: the audit log (evidence) and TensorBoard scalars (a view).

One run folder holds `audit.jsonl` (hash-chained, see audit.py) and `tensorboard/`. Record kinds:

- ``run-start``: strategy, gate, model, suite hashes, configuration
- ``reference``: the round-0 BehaviorProfile of the initial global model
- ``round``: per round and phase (train/evaluate): clients (sampled, valid, refused with reasons),
  system metrics (loss, update norms), behavior per mode and metric (global value, stderr,
  reference, degradation, client median and spread), per-client trust metrics, privacy spend,
  alarms, and the gate's action (accept / quarantine / rollback / halt) with culprits
- ``run-resume``: a guard restarted on the folder of a run that crashed continued it
- ``torn-tail``: the log recovered a write cut short by a crash (report/torn.py)
- ``run-end``: status and totals
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flwr_trust.report.audit import AuditLog

AUDIT_FILE = "audit.jsonl"
TENSORBOARD_DIR = "tensorboard"


class RunRecorder:
    """Audit log + TensorBoard writer for one run folder. The TensorBoard writer is made on the
    first scalars, so a folder that is opened and refused (guard/resume.py) gets no event file."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog(self.run_dir / AUDIT_FILE)
        self.tensorboard = tensorboard
        self._writer: Any = None

    @property
    def audit_path(self) -> Path:
        return self.run_dir / AUDIT_FILE

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        self.audit.append(kind, payload)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """TensorBoard scalars (finite values only) at `step` (the server round)."""
        if not self.tensorboard:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR))
        for tag, value in values.items():
            if isinstance(value, int | float) and math.isfinite(value):
                self._writer.add_scalar(tag, float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tensorboard = False  # closed: no new writer
        self.audit.close()
