"""Fuzz TrustGuard's reply screening with malformed replies mixed among honest ones.

Replies come from tests/helpers/adversary.py; tests/helpers/contract.py `run_batch` sends one
round of them to a fresh TrustGuard over an inner strategy and checks the contract: the call
never raises, the global arrays are bit-identical to the inner strategy alone on only the
well-formed replies (normalized as the contract states), every malformed reply is refused or
failed with a reason and counted, no well-formed one is.

FedAvg gets at least 10,000 malformed replies per run (`pytest -s` prints the count;
`bench/adversarial_replies.py` prints counts by kind and reason for every inner strategy),
the other inner strategies and gates fewer. Arrays are tiny (168 floats).

Two more property tests pin the guard's hot-path shortcuts to what they replace: the screen's
zero-copy `decode_array` vs Flower's `Array.numpy()`, and the update checks' fast median vs
`np.sort`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array
from flwr.serverapp.strategy import FedAvg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flwr_trust.detect.update_stats import _median_rows
from flwr_trust.strategies.normalization import cap_factor
from flwr_trust.strategies.screening import (
    MAX_ABS_TRUST_VALUE,
    MAX_WEIGHT,
    MIN_WEIGHT,
    decode_array,
)
from tests.helpers.adversary import (
    ACCEPTED,
    MALFORMED,
    RS,
    Spec,
    _with_metrics,
    colluder,
)
from tests.helpers.contract import OTHER_INNERS, BatchResult, run_batch

# Malformed reply messages sent in this session, by kind (shown with `pytest -s`).
GENERATED: Counter[str] = Counter()
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(specs: list[Spec], base: Path, inner: Any = None, gate: str = "off"
          ) -> BatchResult:
    out = run_batch(specs, base, inner or FedAvg, gate)
    GENERATED.update(out.kinds)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder for the module's run folders (hypothesis forbids function-scoped ones). In
    memory where possible: each audit record is fsync'ed, which dominates on a slow disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("fuzz")
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="flwr-trust-fuzz-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nfuzz: {sum(GENERATED.values())} malformed replies ({len(GENERATED)} kinds)")


# -------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("position", ["first", "last"])
def test_malformed_reply_is_refused(kind: str, position: str, base: Path) -> None:
    """One malformed node among three honest ones, first (FedAvg's sum takes the dtype of the
    first reply) or last: refused, and the result equals FedAvg on the honest three."""
    specs = [Spec("honest", s) for s in (1, 2, 3)]
    specs.insert(0 if position == "first" else 3, Spec(kind, 7))
    check(specs, base)


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
@pytest.mark.parametrize("position", ["first", "last"])
def test_unusual_well_formed_reply_is_accepted(kind: str, position: str, base: Path) -> None:
    specs = [Spec("honest", s) for s in (1, 2)]
    specs.insert(0 if position == "first" else 2, Spec(kind, 7))
    check(specs, base)


def test_only_malformed_replies_give_no_model(base: Path) -> None:
    kinds = ["nan-in-array", "error-reply", "duplicate-node", "no-array-record"]
    check([Spec(k, i) for i, k in enumerate(kinds)], base)


def test_all_copies_of_a_repeated_node_are_counted(base: Path) -> None:
    check([Spec("honest", 1), Spec("triplicate-node", 5), Spec("honest", 2)], base)


HONEST = st.builds(Spec, st.sampled_from(["honest"] * 4 + sorted(ACCEPTED)),
                   st.integers(0, 10**6), st.sampled_from(["float32"] * 4 + ["float64", "float16"]),
                   st.booleans())


@st.composite
def batches(draw: st.DrawFn, min_good: int = 2) -> list[Spec]:
    """8-12 malformed nodes (any kinds, repeats allowed) and `min_good`-8 well-formed ones, in
    any order."""
    kinds = draw(st.lists(st.sampled_from(sorted(MALFORMED)), min_size=8, max_size=12))
    good = draw(st.lists(HONEST, min_size=min_good, max_size=8))
    bad = [Spec(k, draw(st.integers(0, 10**6))) for k in kinds]
    return draw(st.permutations(bad + good))


def test_a_majority_layout_does_not_refuse_the_minority(base: Path) -> None:
    """Three replies with an extra metric key and one without: all four are aggregated, the
    odd keys dropped (a majority never decides)."""
    check([Spec("odd-metric-key", s) for s in (1, 2, 3)] + [Spec("honest", 4)], base)


@settings(FUZZ, max_examples=1000)
@given(specs=batches())
def test_fuzz_mixed_batches(specs: list[Spec], base: Path) -> None:
    """FedAvg: about 10,500 malformed replies in 1,000 rounds."""
    check(specs, base)


@pytest.mark.parametrize("gate", ["off", "quarantine", "rollback"])
@pytest.mark.parametrize("name", sorted(OTHER_INNERS))
def test_fuzz_inner_strategies(name: str, gate: str, base: Path) -> None:
    """Every other inner strategy (stateful FedOpt ones included: they must never see a
    refused reply) under every gate that aggregates: 12 rounds each."""
    @settings(FUZZ, max_examples=12)
    @given(specs=batches(min_good=4))
    def one_round(specs: list[Spec]) -> None:
        check(specs, base, OTHER_INNERS[name], gate)
    one_round()


@settings(FUZZ, max_examples=60)
@given(n=st.integers(4, 20), fraction=st.floats(0.05, 0.30),
       weight=st.sampled_from([1e3, 1e9, 1e15]), scale=st.sampled_from([0.1, 10.0]),
       seed=st.integers(0, 10**6), data=st.data())
def test_colluding_group_up_to_30_percent(n: int, fraction: float, weight: float, scale: float,
                                          seed: int, data: st.DataObject, base: Path) -> None:
    """Up to 30% of a round's nodes send one coordinated, well-formed update with an inflated
    weight: aggregated without contamination, and no member weighs more than k times the
    heaviest honest reply (k of the weight cap), so the group cannot claim the round."""
    g = max(1, int(fraction * n))
    colluders = [Spec("colluder", seed + i, make=colluder(weight, scale), bad=False)
                 for i in range(g)]
    honest = [Spec("honest", seed + 100 + i) for i in range(n - g)]
    specs = data.draw(st.permutations(colluders + honest))
    out = check(specs, base)
    k = cap_factor(n, 0.5)
    group = [node for node, kind in out.node_kind.items() if kind == "colluder"]
    heaviest_honest = max(w for node, w in out.weights.items() if node not in group)
    for node in group:
        assert out.weights[node] <= k * heaviest_honest


FLOATS = st.floats(allow_nan=True, allow_infinity=True)
NUMBERS = st.one_of(FLOATS, st.integers(-(10**400), 10**400), st.lists(FLOATS, max_size=3))


@settings(FUZZ, max_examples=200)
@given(value=NUMBERS, key=st.sampled_from([RS, "trust.knowledge.loglik", "trust.style.x"]),
       seed=st.integers(0, 10**6))
def test_fuzz_trust_metric_values(value: Any, key: str, seed: int, base: Path) -> None:
    """Any number or list as a `trust.*` value: refused exactly when screening.py's rule
    says so (every value finite with |v| <= 1e6; a watched metric's value is one number, and a
    clear rate's lies in [0, 1])."""
    values = value if isinstance(value, list) else [value]
    ok = all(abs(v) <= MAX_ABS_TRUST_VALUE for v in values)  # False for NaN and Inf
    ok = ok and not (key == RS and isinstance(value, list))
    ok = ok and not (key == RS and not -1e-6 <= value <= 1.0 + 1e-6)  # float slack 1e-6
    _one_value_batch(key, value, ok, seed, base)


@settings(FUZZ, max_examples=150)
@given(value=NUMBERS, seed=st.integers(0, 10**6))
def test_fuzz_weights(value: Any, seed: int, base: Path) -> None:
    """Any number or list as `num-examples`: accepted only as a scalar in [MIN_WEIGHT,
    MAX_WEIGHT] (then capped like every weight)."""
    ok = (not isinstance(value, list) and not isinstance(value, bool)
          and MIN_WEIGHT <= value <= MAX_WEIGHT)
    _one_value_batch("num-examples", value, ok, seed, base)


def _one_value_batch(key: str, value: Any, ok: bool, seed: int, base: Path) -> None:
    odd = Spec(f"value:{key}={value!r}"[:80], seed, make=_with_metrics(**{key: value}),
               bad=not ok)
    check([Spec("honest", seed + 1), odd, Spec("honest", seed + 2)], base)


DTYPES = ["float16", "float32", "float64", ">f4", "int32", "uint8", "complex64", "bool"]


@settings(FUZZ, max_examples=200)
@given(dtype=st.sampled_from(DTYPES), shape=st.lists(st.integers(0, 5), max_size=3),
       fortran=st.booleans(), cut=st.integers(0, 200), junk=st.binary(max_size=8))
def test_decode_array_matches_flower(dtype: str, shape: list[int], fortran: bool, cut: int,
                                     junk: bytes) -> None:
    """The screen's zero-copy decoder gives Flower's `Array.numpy()` (dtype, shape, values) and
    refuses exactly the bytes Flower cannot load (truncated, or junk before the data)."""
    values = np.arange(math.prod(shape)).reshape(shape).astype(dtype)
    values = np.asfortranarray(values) if fortran else values
    arr = Array(values)
    for data in (arr.data, arr.data[:cut], junk + arr.data):
        case = Array(dtype=arr.dtype, shape=tuple(arr.shape), stype=arr.stype, data=data)
        try:
            want = case.numpy()
        except Exception:
            with pytest.raises(Exception):  # noqa: B017 - any decoding error refuses the reply
                decode_array(case)
            continue
        got = decode_array(case)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@settings(FUZZ, max_examples=100)
@given(n=st.integers(1, 300), d=st.integers(1, 700), ties=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_update_median_matches_sorting(n: int, d: int, ties: bool, seed: int) -> None:
    """The update checks' fast coordinate-wise median (tiled transpose + sort or selection)
    gives exactly the numbers of the plain sort along the clients axis it replaced."""
    rng = np.random.default_rng(seed)
    block = (rng.integers(-3, 3, (n, d)) if ties else rng.standard_normal((n, d)) * 1e30)
    block = block.astype(np.float32)
    srt = np.sort(block, axis=0)
    want = 0.5 * srt[(n - 1) // 2] + 0.5 * srt[n // 2]
    assert _median_rows(block).tobytes() == want.tobytes()
