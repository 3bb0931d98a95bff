"""Probation: a client named for a behaviour stays out until its own reports recover."""

from __future__ import annotations

from flwr_trust.guard.probation import Probation
from flwr_trust.protocol import Observation

REFUSAL = ("alignment", "refusal-rate")  # lower is worse, tolerance 0.05
STEREOTYPE = ("bias", "stereotype-pref")  # higher is worse


def _reports(metric: tuple[str, str], values: dict[int, float | None]) -> dict:
    mode, name = metric
    return {n: ({mode: {name: Observation(v, 0.01, 13)}} if v is not None else {})
            for n, v in values.items()}


def _tol(mode: str, metric: str) -> float:
    return 0.05


def test_stays_out_while_worse_than_the_median_by_more_than_the_tolerance():
    p = Probation()
    p.add([1], [REFUSAL])
    kept, released = p.review(_reports(REFUSAL, {1: 0.20, 2: 0.80, 3: 0.75, 4: 0.70}), _tol)
    assert (kept, released) == ([1], [])
    kept, released = p.review(_reports(REFUSAL, {1: 0.72, 2: 0.80, 3: 0.75, 4: 0.70}), _tol)
    assert (kept, released) == ([], [1]) and not p.named


def test_direction_follows_the_metric():
    p = Probation()
    p.add([1], [STEREOTYPE])
    assert p.review(_reports(STEREOTYPE, {1: 0.90, 2: 0.60, 3: 0.62, 4: 0.58}), _tol)[0] == [1]
    assert p.review(_reports(STEREOTYPE, {1: 0.40, 2: 0.60, 3: 0.62, 4: 0.58}), _tol)[1] == [1]


def test_no_report_or_too_few_others_keeps_the_client_out():
    p = Probation()
    p.add([1], [REFUSAL])
    assert p.review(_reports(REFUSAL, {1: None, 2: 0.8, 3: 0.8}), _tol)[0] == [1]
    assert p.review(_reports(REFUSAL, {1: 0.8, 2: 0.8}), _tol)[0] == [1]  # one other only
    assert p.review(_reports(REFUSAL, {1: 0.8, 2: 0.8, 3: 0.8}), _tol)[0] == [1]  # two: mean
    assert p.review({}, _tol)[0] == [1]


def test_colluders_on_probation_do_not_set_the_median():
    p = Probation()
    p.add([1, 2], [REFUSAL])
    reports = _reports(REFUSAL, {1: 0.2, 2: 0.2, 3: 0.8, 4: 0.78, 5: 0.75})
    assert p.review(reports, _tol) == ([1, 2], [])


def test_every_named_metric_must_recover():
    p = Probation()
    p.add([1], [REFUSAL, STEREOTYPE])
    both = _reports(REFUSAL, {1: 0.8, 2: 0.8, 3: 0.8, 4: 0.8})
    for n, r in _reports(STEREOTYPE, {1: 0.9, 2: 0.6, 3: 0.6, 4: 0.6}).items():
        both[n] |= r
    assert p.review(both, _tol)[0] == [1]


def test_unknown_metrics_are_not_tracked_and_json_round_trips():
    p = Probation()
    p.add([1], [("update", "norm"), ("alignment", "no-such-metric")])
    assert not p.named
    p.add([1, 3], [REFUSAL, ("bias", "stereotype-pref/age")])
    back = Probation.from_json(p.to_json())
    assert back.named == p.named
    assert Probation.from_json({"x": ["alignment.refusal-rate"], "2": [7, "nodot"]}).named == {}
    assert Probation.from_json(None).named == {}


def test_with_fewer_than_two_peers_the_servers_reference_decides():
    """Two honest clients on probation and one other client left: that client alone must not
    decide whether they come back. The server's reference value does; without one they stay."""
    p = Probation()
    p.add([1, 2], [REFUSAL])
    reports = _reports(REFUSAL, {1: 0.78, 2: 0.80, 3: 1.0})

    def reference(mode: str, metric: str) -> float | None:
        return 0.80 if (mode, metric) == REFUSAL else None

    assert p.review(reports, _tol) == ([1, 2], [])  # no reference: nothing shows recovery
    assert p.review(reports, _tol, reference=reference) == ([], [1, 2])
    p.add([1], [REFUSAL])
    worse = _reports(REFUSAL, {1: 0.60, 3: 1.0})
    assert p.review(worse, _tol, reference=reference) == ([1], [])
    two_peers = _reports(REFUSAL, {1: 0.79, 3: 1.0, 4: 0.80})  # their mean would be 0.90
    assert p.review(two_peers, _tol, reference=reference) == ([], [1])


def test_a_client_the_audit_contradicted_is_not_released():
    p = Probation()
    p.add([1], [REFUSAL])
    reports = _reports(REFUSAL, {1: 0.80, 2: 0.80, 3: 0.75, 4: 0.70})
    assert p.review(reports, _tol, distrusted={1}) == ([1], [])
    assert p.review(reports, _tol) == ([], [1])


def test_where_the_server_audits_only_a_verified_report_releases():
    """`verified` (the clients the server audited and found consistent this round): a client
    on probation not among them stays out, however good its report; None = no audit possible."""
    p = Probation()
    p.add([1], [REFUSAL])
    reports = _reports(REFUSAL, {1: 0.80, 2: 0.80, 3: 0.75, 4: 0.70})
    assert p.review(reports, _tol, verified=set()) == ([1], [])
    assert p.review(reports, _tol, verified={2, 3}) == ([1], [])
    assert p.review(reports, _tol, verified={1}) == ([], [1])


def test_a_client_named_by_the_update_checks_is_released_by_an_ordinary_update():
    from flwr_trust.detect.update import UpdateCheckResult
    from flwr_trust.guard.probation import UPDATE_KEY, ordinary_update

    p = Probation()
    p.add([1], [UPDATE_KEY])
    assert Probation.from_json(p.to_json()).named == {1: {UPDATE_KEY}}
    stats = {n: {"z_norm": 0.5, "z_cosine": -0.5} for n in (1, 2, 3, 4)}
    far = stats | {1: {"z_norm": 15.0, "z_cosine": -0.5}}  # t(2) two-sided 1%: 9.9
    assert p.review({}, _tol, update_ordinary=ordinary_update(UpdateCheckResult(stats=far))) \
        == ([1], [])
    assert p.review({}, _tol) == ([1], [])  # no update evidence: stays out
    two = UpdateCheckResult(stats={1: stats[1], 2: stats[2]})  # too few clients to judge
    assert p.review({}, _tol, update_ordinary=ordinary_update(two)) == ([1], [])
    flagged = UpdateCheckResult(flagged=(1,), stats=stats)
    assert p.review({}, _tol, update_ordinary=ordinary_update(flagged)) == ([1], [])
    ordinary = ordinary_update(UpdateCheckResult(stats=stats))
    assert p.review({}, _tol, update_ordinary=ordinary) == ([], [1]) and not p.named


def test_update_release_reads_the_direction_z_against_the_margin():
    from flwr_trust.detect.update import UpdateCheckResult
    from flwr_trust.guard.probation import ordinary_update

    # Client 1 points less along the shared direction than the others (raw z -30) but keeps
    # more than the margin's share of it (direction z +2): ordinary.
    stats = {n: {"z_norm": 0.0, "z_cosine": 0.0, "z_direction": 5.0} for n in range(2, 6)}
    stats[1] = {"z_norm": 0.0, "z_cosine": -30.0, "z_direction": 2.0}
    assert ordinary_update(UpdateCheckResult(stats=stats))(1)
    stats[1]["z_direction"] = -30.0
    assert not ordinary_update(UpdateCheckResult(stats=stats))(1)
