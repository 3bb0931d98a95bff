"""User-facing errors: each says what was wrong and what to do about it."""

from __future__ import annotations


class TrustError(Exception):
    """Base class for every error flwr-trust raises on purpose.

    The message is one readable sentence naming the problem, followed by the fix.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


class ModelLoadError(TrustError):
    """A base model could not be found or loaded."""


class ArraysMismatchError(TrustError):
    """Arrays (an ArrayRecord or adapter) do not fit the model they are loaded into."""


class AggregateNotAModel(TrustError):
    """The inner strategy's aggregate is no model; `metric` names the alarm it raises."""

    metric = "aggregate-not-a-model"


class AggregateNotFinite(AggregateNotAModel):
    """The inner strategy's aggregate holds NaN or Inf values."""

    metric = "aggregate-not-finite"


class AggregateLayoutChanged(AggregateNotAModel):
    """The inner strategy's aggregate lacks arrays of the global model, adds some, or changes
    their shapes (e.g. MultiKrum told to select 0 nodes returns no arrays at all)."""

    metric = "aggregate-layout"


class SuiteError(TrustError):
    """A probe suite file is missing, empty or malformed."""


class SuiteHashMismatchError(TrustError):
    """Two parties do not hold the same probe suite."""


class LocalDataError(TrustError):
    """Local data handed to the client mod is malformed."""


class DatasetAdapterError(TrustError):
    """A public benchmark file is missing or not in the expected layout."""


class AuditLogError(TrustError):
    """An audit log is missing, does not verify, or cannot be written.

    first_bad: 0-based number of the first record that fails verification, if one does.
    """

    def __init__(self, problem: str, fix: str = "", first_bad: int | None = None) -> None:
        super().__init__(problem, fix)
        self.first_bad = first_bad
