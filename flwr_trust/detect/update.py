"""Server-side `update` mode: robust outlier checks on the model updates of one round.

Each client's update (its arrays minus the current global arrays) is compared with a robust
centre, the coordinate-wise median of a seeded random sample of clients (from 4 to 16
clients: of the others; up to CENTRE_SAMPLE: of all; above, two halves, so that nobody is
scored against a centre it is part of).
Per client we compute the global L2 norm and the per-layer norms (every coordinate) and the
cosine similarity to the centre (on a seeded random share of CENTRE_COORDS coordinates), turn
each statistic into a robust z-score across all clients (median and MAD) and flag clients whose
z-score crosses a Bonferroni threshold. `update_stats.py` computes the numbers in one streaming
pass, O(n*d) time, nothing pairwise (unlike Krum, O(n^2*d)) beyond the few-client medians;
why the centre is sampled is explained there, what it costs in power in docs/detection.md.

False alarms: the per-round budget alpha is split in two families, half for the whole-update
tests (norm and cosine, m = 2 * n_clients one-sided tests) and half for the layer norms
(m = n_clients * n_layers; with a single layer its norm is the global norm and the whole-update
family gets all of alpha). In each family the threshold is the quantile at
1 - alpha_family / (2m), so by Bonferroni P(any false flag in a round) <= alpha / 2, leaving a
factor 2 of slack for non-normal statistics. The split matters with few clients: pooled with
hundreds of layer tests, the norm and cosine tests of 4 clients needed z > 411 at alpha 0.01,
now 40. Because z-scores divide by a MAD estimated from n clients they have t-like tails, so
the quantile is Student-t: its df per n (about 0.4 n) is the largest whose quantiles cover the
simulated MAD z of n normal values at tail levels 1e-3 to 1e-6 (`tools/mad_z_df.py` prints
the table; tests re-check it). The reported p-value is min(1, 2m * P(T > z) * alpha /
alpha_family), so an alarm is raised exactly when p <= alpha. The sampled centre only enters
the cosine, and its sampling noise is common to all clients scored against it.

Direction margin: the cosine test asks whether a client agrees with the others significantly
less than (1 - m) times their median agreement (m = `cosine_margin`, 0.5 by default), not
less than the median itself. Honest clients whose data differ (non-IID) point partly their own
way: on SmolLM2 benign clients on other data kept 0.65-0.85 of the median cosine yet were 17
to 33 robust SDs below it among 4 clients, past the threshold at alpha 0.1 (12.6; 40 at the
default 0.01; docs/detection.md, "Non-IID clients and the direction margin"); a sign-flipped
update's cosine is negative. Like the behaviour tests' tolerance, the margin only removes
alarms, so the false-alarm bound above still holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.statistics import MAD_SCALE, MIN_CLIENTS
from flwr_trust.detect.update_stats import (
    RoundStats,
    Rows,
    Update,
    check_layout,
    coordinate_picks,
    flatten_update,
    round_statistics,
)
from flwr_trust.detect.update_thresholds import BonferroniFamily, bonferroni_families
from flwr_trust.errors import TrustError

MODE = "update"
# MAD floors: a deviation smaller than ~the floor is never significant. They stop identical (or
# bit-for-bit nearly identical) updates from dividing by zero or flagging float32 rounding noise.
NORM_MAD_FLOOR = 1e-3  # relative to the median norm: spreads below 0.1% of it are noise
COSINE_MAD_FLOOR = 1e-3  # absolute, cosines live in [-1, 1]
CENTRE_SAMPLE = 64  # clients whose coordinate-wise median is the robust centre
CENTRE_COORDS = 1 << 17  # coordinates it covers (a random share of each layer)
COSINE_MARGIN = 0.5  # share of the median cosine a client may lack (module docstring)
_TINY = 1e-12  # absolute last resort when the median norm itself is 0 (all-zero updates)
_MAX_LISTED_LAYERS = 10
__all__ = ["UpdateCheckResult", "UpdateChecker", "check_updates", "direction_z", "flatten_update"]


@dataclass(frozen=True)
class UpdateCheckResult:
    """Outcome of `check_updates` for one round.

    flagged:   node ids with at least one alarm (statistical or malformed), sorted
    stats:     per node: norm, cosine, z_norm, z_cosine (against the median), z_direction
               (against the margin's reference: what the cosine test uses), max_layer_z,
               worst_layer, min_layer_cosine (and weight if given); malformed nodes:
               {"malformed": problem}
    alarms:    one Alarm per (node, metric) that fired
    threshold: the Bonferroni z threshold of the norm and cosine tests (inf when no
               statistical test ran)
    layer_threshold: that of the layer-norm tests (inf when none ran: no test, or one layer)
    reason:    what was checked, or why the statistical checks were skipped
    """

    flagged: tuple[int, ...] = ()
    stats: dict[int, dict[str, float | str]] = field(default_factory=dict)
    alarms: list[Alarm] = field(default_factory=list)
    threshold: float = math.inf
    reason: str = ""
    layer_threshold: float = math.inf


@dataclass(frozen=True)
class UpdateChecker:
    """The update checks of a run: `check_updates` with the run's budget, centre and seed.

    alpha:          per-round false-alarm budget over all clients and statistics
    centre_clients: clients whose median is the robust centre (0 = all: exact)
    centre_coords:  coordinates the centre and cosines cover (0 = all: exact)
    seed:           seeds the sampled centre (with the round)
    cosine_margin:  share of the median cosine a client may lack before the direction test
                    applies (0 = test against the median itself; module docstring)
    """

    alpha: float = 0.01
    centre_clients: int = CENTRE_SAMPLE
    centre_coords: int = CENTRE_COORDS
    seed: int = 0
    cosine_margin: float = COSINE_MARGIN

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise TrustError(f"update_alpha must be in (0, 1), got {self.alpha}.",
                             "Use e.g. 0.01.")
        for name in ("centre_clients", "centre_coords"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TrustError(f"update_{name} must be an integer >= 0, got {value!r}.",
                                 "Use 0 for all (exact) or a sample size, e.g. 64.")
        _check_margin(self.cosine_margin)

    @property
    def centre(self) -> tuple[int, int]:
        """(clients, coordinates) of the centre; 0 means all, i.e. a bound no round reaches."""
        return self.centre_clients or 2**62, self.centre_coords or 2**62

    def check(self, updates: Mapping[int, Update], *, base: Update | None = None,
              round: int = 0) -> UpdateCheckResult:
        clients, coords = self.centre
        return check_updates(updates, base=base, round=round, alpha=self.alpha,
                             centre_sample=clients, centre_coords=coords, seed=self.seed,
                             cosine_margin=self.cosine_margin)


def check_updates(
    updates: Mapping[int, Update],
    weights: Mapping[int, float] | None = None,
    *,
    base: Update | None = None,
    round: int = 0,
    alpha: float = 0.01,
    min_clients: int = MIN_CLIENTS,
    centre_sample: int = CENTRE_SAMPLE,
    centre_coords: int = CENTRE_COORDS,
    seed: int = 0,
    cosine_margin: float = COSINE_MARGIN,
) -> UpdateCheckResult:
    """Flag clients whose update is an outlier in norm, direction or a single layer's norm.

    updates: node id -> layer name -> update array (client minus global), any float shapes; or,
             with `base`, the clients' arrays themselves (the update is computed per layer).
    weights: node id -> num examples. Only reported in `stats`, deliberately not used for the
             centre or the thresholds: counts are self-reported and a liar could steer them.
    base:    the global arrays the updates are relative to (None: `updates` are updates).
    alpha:   per-round false-alarm budget over all clients and statistics (Bonferroni).
    centre_sample: clients whose median is the robust centre (a seeded sample, by `seed` and
             `round`, of the well-formed clients; all of them when there are no more).
    centre_coords: coordinates the centre and the cosines cover (a seeded uniform sample; all
             of them in models up to that size). Norms always cover every coordinate.
    cosine_margin: a client is a direction outlier only when its cosine is significantly
             below (1 - cosine_margin) x the median cosine (in [0, 1]; 0: below the median).
    Updates with NaN/Inf, non-numeric values or a layer layout (names, shapes) that differs from
    the global model's (or, without `base`, the majority's) are flagged "malformed" and excluded
    from the centre; that check needs no minimum count.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    _check_margin(cosine_margin)
    if centre_sample < 1 or centre_coords < 1:
        raise ValueError(f"centre_sample and centre_coords must be >= 1, got {centre_sample} "
                         f"and {centre_coords}")
    if not updates:
        return UpdateCheckResult(reason="no updates received")

    problems, layout, sizes = check_layout(updates, base)
    candidates = [n for n in sorted(updates) if n not in problems]
    ev, valid = None, []
    if layout and candidates:
        rng = np.random.default_rng([seed, round])
        order = [candidates[i] for i in rng.permutation(len(candidates))]
        numbers = round_statistics(Rows(updates, base, layout, sizes), order, centre_sample,
                                   coordinate_picks(sizes, centre_coords, rng), problems)
        if numbers is not None:
            ev, valid = _evidence(numbers, layout, cosine_margin), numbers.nodes
    stats: dict[int, dict[str, float | str]] = {n: {"malformed": p} for n, p in problems.items()}
    alarms = [_malformed_alarm(n, p, round) for n, p in sorted(problems.items())]

    if not layout:
        reason = "updates contain no parameters; nothing to compare"
    elif len(valid) < min_clients or ev is None:
        reason = (
            f"only {len(valid)} well-formed update(s); robust statistics need at least "
            f"{min_clients} clients, so no statistical check ran"
        )
    else:
        whole, layer = bonferroni_families(len(valid), len(layout), alpha)
        for i, node in enumerate(valid):
            stats[node] = ev.client_stats(i)
            if weights is not None and node in weights:
                stats[node]["weight"] = float(weights[node])
            alarms += ev.alarms(i, node, whole, layer, round)
        flagged = tuple(sorted({n for a in alarms for n in a.clients}))
        reason = (
            f"checked {len(valid)} well-formed update(s) "
            + ("each against the median of the other " if ev.leave_one_out
               else "against the median of " if len(ev.centre_sizes) == 1
               else "against the medians of ")
            + " + ".join(map(str, ev.centre_sizes))
            + f" clients, {whole.n_tests + (layer.n_tests if layer else 0)} Bonferroni tests "
            f"at alpha={alpha}; {len(flagged)} client(s) flagged"
        )
        return UpdateCheckResult(flagged, stats, alarms, whole.threshold, reason,
                                 layer.threshold if layer else math.inf)

    return UpdateCheckResult(tuple(sorted(problems)), stats, alarms, math.inf, reason)


# --------------------------------------------------------------------------------------------
# internals


def _check_margin(margin: float) -> None:
    if (not isinstance(margin, (int, float)) or isinstance(margin, bool)
            or not 0.0 <= margin <= 1.0):
        raise TrustError(f"update cosine margin must be a number in [0, 1], got {margin!r}.",
                         "Use 0.5 (the default: a client must keep half the median agreement),"
                         " 0 to test against the median itself, 1 to flag only clients that "
                         "point away from the others.")


def direction_z(cosines: np.ndarray, margin: float) -> tuple[np.ndarray, float]:
    """The direction test's z-scores and reference: (cosine - reference) / robust scale, where
    reference = median - margin x max(median, 0) (a median <= 0, no shared direction, leaves
    nothing to keep a share of) and the scale is that of `z_cosine` (1.4826 MAD, floored)."""
    _, med, scale = _robust_z(np.asarray(cosines, dtype=float), COSINE_MAD_FLOOR)
    reference = float(med - margin * max(float(med), 0.0))
    return (np.asarray(cosines, dtype=float) - reference) / scale, reference


def _robust_z(x: np.ndarray, floor: np.ndarray | float) -> tuple[np.ndarray, Any, Any]:
    """(x - median) / (1.4826 * max(MAD, floor)) along axis 0; returns z, median, scale."""
    med = np.median(x, axis=0)
    mad = np.median(np.abs(x - med), axis=0)
    scale = MAD_SCALE * np.maximum(mad, floor)
    return (x - med) / scale, med, scale


def _cos(dot: np.ndarray, a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """dot / (a * b), defined as 0 where either vector is zero."""
    den = a * b
    return np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)


@dataclass
class _Evidence:
    """Per-client statistics of one round, for the well-formed clients in order."""

    layers: list[str]
    norm: np.ndarray  # (n,)
    cosine: np.ndarray  # (n,)
    layer_norm: np.ndarray  # (n, L)
    layer_cosine: np.ndarray  # (n, L)
    centre_sizes: tuple[int, ...]  # clients in each median (one, or two disjoint halves)
    leave_one_out: bool  # each client against the median of the others (update_stats.py)
    cosine_margin: float  # share of the median cosine a client may lack (module docstring)
    # robust z-scores with the median and scale they were computed from, set in __post_init__
    z_norm: np.ndarray = field(init=False)
    med_norm: float = field(init=False)
    scale_norm: float = field(init=False)
    z_cos: np.ndarray = field(init=False)
    med_cos: float = field(init=False)
    scale_cos: float = field(init=False)
    ref_cos: float = field(init=False)  # what the direction test compares with
    z_dir: np.ndarray = field(init=False)  # (cosine - ref_cos) / scale_cos
    z_layer: np.ndarray = field(init=False)  # (n, L)
    med_layer: np.ndarray = field(init=False)  # (L,)
    scale_layer: np.ndarray = field(init=False)  # (L,)

    def __post_init__(self) -> None:
        med = np.median(self.norm)
        self.z_norm, self.med_norm, self.scale_norm = _robust_z(
            self.norm, max(NORM_MAD_FLOOR * med, _TINY)
        )
        self.z_cos, self.med_cos, self.scale_cos = _robust_z(self.cosine, COSINE_MAD_FLOOR)
        self.z_dir, self.ref_cos = direction_z(self.cosine, self.cosine_margin)
        floors = np.maximum(NORM_MAD_FLOOR * np.median(self.layer_norm, axis=0), _TINY)
        self.z_layer, self.med_layer, self.scale_layer = _robust_z(self.layer_norm, floors)

    def client_stats(self, i: int) -> dict[str, float | str]:
        j = int(np.argmax(self.z_layer[i]))
        return {
            "norm": float(self.norm[i]),
            "cosine": float(self.cosine[i]),
            "z_norm": float(self.z_norm[i]),
            "z_cosine": float(self.z_cos[i]),
            "z_direction": float(self.z_dir[i]),
            "max_layer_z": float(self.z_layer[i, j]),
            "worst_layer": self.layers[j],
            "min_layer_cosine": float(self.layer_cosine[i].min()),
        }

    def alarms(self, i: int, node: int, whole: BonferroniFamily, layer: BonferroniFamily | None,
               rnd: int) -> list[Alarm]:
        """Alarms for client i: large norm, low cosine (both one-sided), extreme layer norm."""
        n = len(self.norm)
        t = whole.threshold
        out = []
        z = float(self.z_norm[i])
        if z > t:
            ev = {
                "norm": float(self.norm[i]),
                "median": float(self.med_norm),
                "scale": float(self.scale_norm),
                "z": z,
                "p_value": whole.p_value(z),
            }
            msg = (
                f"Client {node}'s update norm {ev['norm']:.3g} is {z:.1f} robust SDs above "
                f"the median {ev['median']:.3g}."
            )
            out.append(_alarm("update-norm", rnd, node, ev | whole.evidence(n), msg))
        z = float(self.z_dir[i])
        if z < -t:
            ev = {
                "cosine": float(self.cosine[i]),
                "median": float(self.med_cos),
                "margin": self.cosine_margin,
                "reference": self.ref_cos,
                "scale": float(self.scale_cos),
                "z": z,
                "z_vs_median": float(self.z_cos[i]),
                "p_value": whole.p_value(-z),
            }
            msg = (
                f"Client {node}'s update points away from the robust centre: cosine "
                f"{ev['cosine']:.3f} vs median {ev['median']:.3f}, "
                f"{z:.1f} robust SDs below {ev['reference']:.3f} (the median less a "
                f"{self.cosine_margin:g} share of it)."
            )
            out.append(_alarm("update-cosine", rnd, node, ev | whole.evidence(n), msg))
        if layer is None:
            return out
        hot = np.flatnonzero(self.z_layer[i] > layer.threshold)
        if hot.size:
            hot = hot[np.argsort(-self.z_layer[i, hot])]
            j = int(hot[0])
            z = float(self.z_layer[i, j])
            ev = {
                "layer": self.layers[j],
                "norm": float(self.layer_norm[i, j]),
                "median": float(self.med_layer[j]),
                "scale": float(self.scale_layer[j]),
                "z": z,
                "p_value": layer.p_value(z),
                "n_layers_flagged": int(hot.size),
                "layers_flagged": [self.layers[k] for k in hot[:_MAX_LISTED_LAYERS]],
            }
            msg = (
                f"Client {node}'s update to layer '{ev['layer']}' has norm {ev['norm']:.3g}, "
                f"{z:.1f} robust SDs above the median {ev['median']:.3g} "
                f"({hot.size} layer(s) flagged)."
            )
            out.append(_alarm("layer-norm", rnd, node, ev | layer.evidence(n), msg))
        return out


def _evidence(stats: RoundStats, layers: list[str], cosine_margin: float) -> _Evidence:
    """Norms over every coordinate; cosines on the centre's coordinates, each client against
    its own centre."""
    norm = np.sqrt(stats.sq.sum(axis=1))
    cosine = _cos(stats.dot.sum(axis=1), np.sqrt(stats.sq_picked.sum(axis=1)),
                  np.sqrt(stats.centre_sq.sum(axis=1)))
    layer_cosine = _cos(stats.dot, np.sqrt(stats.sq_picked), np.sqrt(stats.centre_sq))
    return _Evidence(layers, norm, cosine, np.sqrt(stats.sq), layer_cosine, stats.centre_sizes,
                     stats.leave_one_out, cosine_margin)


def _alarm(metric: str, rnd: int, node: int, evidence: dict[str, Any], msg: str) -> Alarm:
    return Alarm(MODE, metric, "alarm", rnd, (node,), evidence, msg)


def _malformed_alarm(node: int, problem: str, rnd: int) -> Alarm:
    return _alarm(
        "malformed",
        rnd,
        node,
        {"problem": problem},
        f"Client {node}'s update is not trusted and was left out of the robust centre: {problem}.",
    )
