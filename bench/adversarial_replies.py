"""Adversarial replies against TrustGuard's reply contract: counts per inner strategy.

Seeded rounds of 8-12 malformed replies (every kind in tests/helpers/adversary.py) mixed with
2-8 well-formed ones, plus colluding groups of up to 30% of a round sending one inflated,
coordinated update, each through a fresh TrustGuard over every inner strategy. Every round is
checked by tests/helpers/contract.py (no crash, no contamination: global arrays bit-identical
to the inner strategy alone on the valid replies, every malformed reply refused or failed with
a reason). Prints replies, refusals by reason kind and contamination per inner strategy.

    python bench/adversarial_replies.py                 # FedAvg 1000 rounds, others 100
    python bench/adversarial_replies.py --rounds 50 --others 10   # quick
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flwr.serverapp.strategy import FedAvg  # noqa: E402

from tests.helpers.adversary import ACCEPTED, MALFORMED, Spec, colluder  # noqa: E402
from tests.helpers.contract import OTHER_INNERS, run_batch  # noqa: E402
from tests.helpers.guard import ensure_task_identity  # noqa: E402

INNERS = {"fedavg": FedAvg} | OTHER_INNERS
GATES = ("off", "quarantine", "rollback")


def mixed_round(rng: random.Random) -> list[Spec]:
    bad = [Spec(rng.choice(sorted(MALFORMED)), rng.randrange(10**6))
           for _ in range(rng.randint(8, 12))]
    good = [Spec(rng.choice(["honest"] * 4 + sorted(ACCEPTED)), rng.randrange(10**6),
                 rng.choice(["float32"] * 4 + ["float64", "float16"]))
            for _ in range(rng.randint(4, 8))]
    specs = bad + good
    rng.shuffle(specs)
    return specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1000, help="mixed rounds for FedAvg")
    ap.add_argument("--others", type=int, default=100,
                    help="mixed rounds per other inner strategy (spread over the gates)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.getLogger("flwr").setLevel(logging.ERROR)
    logging.getLogger("flwr.trust").setLevel(logging.ERROR)
    ensure_task_identity()
    rng = random.Random(args.seed)
    print("| inner | gate(s) | rounds | replies | malformed | refused | failed | contaminated "
          "| seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    reasons: Counter[str] = Counter()
    totals = Counter()
    with tempfile.TemporaryDirectory(prefix="flwr-trust-adv-") as folder:
        for name, inner in INNERS.items():
            rounds = args.rounds if name == "fedavg" else args.others
            counts: Counter[str] = Counter()
            start = time.perf_counter()
            for i in range(rounds):
                gate = "off" if name == "fedavg" else GATES[i % len(GATES)]
                out = run_batch(mixed_round(rng), Path(folder), inner, gate)  # raises if broken
                counts.update(replies=out.sent, malformed=out.malformed, refused=out.refused,
                              failed=out.failed)
                reasons.update(out.reasons)
            gates = "off" if name == "fedavg" else "/".join(GATES)
            print(f"| {name} | {gates} | {rounds} | {counts['replies']} | {counts['malformed']} "
                  f"| {counts['refused']} | {counts['failed']} | 0 | "
                  f"{time.perf_counter() - start:.1f} |")
            totals.update(counts)
        collusion = colluding_rounds(rng, Path(folder), 100)
    print(f"\nAll: {totals['replies']} replies, {totals['malformed']} malformed, "
          f"{totals['refused']} refused, {totals['failed']} failed, 0 contaminated rounds.")
    print(f"Colluding groups (100 FedAvg rounds, 5-30% of 4-20 nodes, weights up to 1e15): "
          f"largest group share of the round's weight {collusion:.3f}.")
    print("\nRefusals by reason (top 15):")
    for reason, count in reasons.most_common(15):
        print(f"  {count:6d}  {reason}")


def colluding_rounds(rng: random.Random, folder: Path, rounds: int) -> float:
    """The largest weight share a colluding group reached (each round checked for
    contamination by run_batch)."""
    worst = 0.0
    for _ in range(rounds):
        n = rng.randint(4, 20)
        g = max(1, int(rng.uniform(0.05, 0.30) * n))
        weight = rng.choice([1e3, 1e9, 1e15])
        specs = [Spec("colluder", rng.randrange(10**6), make=colluder(weight, 10.0), bad=False)
                 for _ in range(g)]
        specs += [Spec("honest", rng.randrange(10**6)) for _ in range(n - g)]
        rng.shuffle(specs)
        out = run_batch(specs, folder)
        group = sum(w for node, w in out.weights.items() if out.node_kind[node] == "colluder")
        worst = max(worst, group / sum(out.weights.values()))
    return worst


if __name__ == "__main__":
    main()
