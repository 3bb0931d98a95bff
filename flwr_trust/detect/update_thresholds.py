"""Thresholds of the update checks: Bonferroni families of robust z tests and their t df.

Kept apart from `update.py` (the statistics and alarms): this is the false-alarm arithmetic,
documented in that module's docstring and in docs/detection.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr_trust.detect.statistics import t_quantile, t_sf

DF_PER_CLIENT = 0.4  # t degrees of freedom of a MAD-based z-score per client, for n > 25
# n -> the largest t df whose quantiles cover the MAD z of n normal values at tail levels 1e-3 to
# 1e-6 (40 million simulated values per n; `python tools/mad_z_df.py` reprints it). It is
# 0.4 n but for n = 4, where int(0.4 n) = 1 (a Cauchy tail) under-uses a t(2)-like tail by 100x.
SIMULATED_DF = {3: 1, 4: 2, 5: 2, 6: 2, 7: 2, 8: 3, 9: 3, 10: 4, 11: 4, 12: 5, 13: 5, 14: 6,
                15: 6, 16: 7, 17: 7, 18: 7, 19: 7, 20: 8, 21: 8, 22: 9, 23: 9, 24: 10, 25: 10}


@dataclass(frozen=True)
class BonferroniFamily:
    """One Bonferroni family of one-sided z tests: its share of the round's budget and threshold.

    The threshold is the t quantile at 1 - family_alpha / (2 * n_tests) with `df` degrees of
    freedom (the factor 2 is slack for non-normal statistics, see the module docstring).
    """

    name: str
    n_tests: int
    df: int
    alpha: float  # the round's whole budget
    family_alpha: float  # this family's share of it
    threshold: float

    def p_value(self, z: float) -> float:
        """Adjusted one-sided p-value on the round's scale: <= alpha exactly when z > threshold."""
        tail = t_sf(max(z, 0.0), self.df)
        return min(1.0, 2 * self.n_tests * tail * self.alpha / self.family_alpha)

    def evidence(self, n_clients: int) -> dict[str, Any]:
        return {"threshold": self.threshold, "n_tests": self.n_tests, "df": self.df,
                "alpha": self.alpha, "family_alpha": self.family_alpha, "family": self.name,
                "n_clients": n_clients}


def mad_z_df(n_clients: int) -> int:
    """t degrees of freedom that cover the tail of a MAD z-score from n values (>= 1)."""
    return SIMULATED_DF.get(n_clients, max(1, int(DF_PER_CLIENT * n_clients)))


def bonferroni_families(n_clients: int, n_layers: int,
                        alpha: float) -> tuple[BonferroniFamily, BonferroniFamily | None]:
    """(whole-update family, layer family or None) for a round of n clients.

    The whole-update tests (norm, cosine: 2 per client) get alpha / 2 and the layer norms
    (one per client and layer) the other half; with one layer its norm is the global norm, so
    there is no layer family and the whole-update tests get all of alpha. A separate share keeps
    hundreds of layer tests from raising the norm and cosine thresholds (with 4 clients and 420
    LoRA arrays, pooled: z > 411 at alpha 0.01; split: 40).
    """
    df = mad_z_df(n_clients)

    def family(name: str, n_tests: int, share: float) -> BonferroniFamily:
        return BonferroniFamily(name, n_tests, df, alpha, share,
                                t_quantile(share / (2 * n_tests), df))

    if n_layers <= 1:
        return family("update", 2 * n_clients, alpha), None
    return (family("update", 2 * n_clients, alpha / 2),
            family("layer", n_clients * n_layers, alpha / 2))
