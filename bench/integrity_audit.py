"""Integrity audit: honest clients are never flagged, spoofers are caught when audited.

Run: `python bench/integrity_audit.py [--quick]` (tiny model, CPU, in-process).

Each round, every client runs the real client mod (`make_trust_mod`) on its LoRA arrays of the
tiny model (the global model plus a small perturbation, a stand-in for local fine-tuning), and
the server audits the replies with `flwr_trust.detect.integrity.audit_round` on the same arrays
(`BridgeProber`, fp32): exactly what `Guard._audit` runs. Clients:

- honest, clear outgoing model (fp32 client) and honest, private outgoing model (only noised
  headlines released, noise multiplier `--noise-multiplier`), and an honest clear client that
  scores in bf16 (the server scores in fp32), to show the numerical tolerance at work;
- spoofers, whose models drifted further (perturbation `--drift`) and who hide it:
  `perfect`: a consistent clear report of the reference model (the initial global model) on
  this round's sample; `shifted`: its true report with every value moved by `--shift` in the
  "better" direction; `shifted headlines`: only each mode's headline moved, by the smaller
  `--headline-shift` (a lie within the bf16 tolerance, two items of n, passes);
  `noise, pp=1`: shifted, with `.noise = --noise` on every metric and public post-processing
  still 1; `noise, pp=0`: the same with post-processing 0; `noise, consistent`: a
  hidden-model report whose noise and stderr match a declared noise multiplier
  `--fake-multiplier`, values shifted, but no noise added; `stale`: last round's true report
  as it was; `stale, relabelled`: the same with this round's `trust.round`.

The server's probes are cached per (round, client), so every audit fraction is evaluated on
the same reports: per round and fraction, `--draws` audit samples are drawn from the server's
seeded RNG. A spoofer is caught in a draw when it is audited and flagged; honest false flags
are counted over all audits of honest clients.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import torch
from flwr.app import (
    DEFAULT_TTL,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)

from flwr_trust import modes as registry
from flwr_trust import protocol
from flwr_trust.config.client import parse_trust_config
from flwr_trust.detect.integrity import audit_round, client_suites
from flwr_trust.models import get_bridge
from flwr_trust.models.prober import BridgeProber
from flwr_trust.mods import make_trust_mod
from flwr_trust.probes import load_suites
from flwr_trust.probes.suite import combined_hash

HONEST = ("honest, clear", "honest, private", "honest, clear, bf16 client")
SPOOFERS = ("perfect", "shifted", "shifted headlines", "noise, pp=1", "noise, pp=0",
            "noise, consistent", "stale", "stale, relabelled")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=32, help="probe items per mode per round")
    ap.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    ap.add_argument("--honest", type=int, default=2, help="honest clients of each kind")
    ap.add_argument("--draws", type=int, default=50, help="audit samples per round and fraction")
    ap.add_argument("--alpha", type=float, default=0.01, help="the audit's false-flag budget")
    ap.add_argument("--noise-multiplier", type=float, default=5.0,
                    help="honest private clients' trust.privacy.noise-multiplier")
    ap.add_argument("--shift", type=float, default=0.15,
                    help="spoofers' shift of each value (beyond the bf16 tolerance at 32 items)")
    ap.add_argument("--headline-shift", type=float, default=0.02,
                    help="the 'shifted headlines' spoofer's shift of each mode's headline")
    ap.add_argument("--noise", type=float, default=0.5, help="inflated .noise claim")
    ap.add_argument("--fake-multiplier", type=float, default=20.0,
                    help="declared noise multiplier of the 'noise, consistent' spoofer")
    ap.add_argument("--drift", type=float, default=0.3, help="spoofers' model perturbation")
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 rounds, budget 8 (smoke)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.budget, args.honest, args.draws = 1, 2, 8, 1, 10
    return args


# ------------------------------------------------------------------------ clients


def lora(bridge: Any, seed: int, scale: float, base: dict[str, torch.Tensor] | None = None
         ) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(v.shape, generator=gen) * scale
           for k, v in bridge.state_dict().items()}
    return {k: v + base[k] for k, v in out.items()} if base is not None else out


def train_message(arrays: dict[str, torch.Tensor], rnd: int, suite_hash: str, budget: int
                  ) -> Message:
    config = ConfigRecord({"server-round": rnd, protocol.ROUND: rnd,
                           protocol.SUITE_HASH: suite_hash, protocol.PROBE_BUDGET: budget,
                           protocol.REPORT_ITEMS: 1})  # clear reports carry per-item values
    meta = Metadata(run_id=1, message_id=f"train-{rnd}", src_node_id=0, dst_node_id=1,
                    reply_to_message_id="", group_id=str(rnd), created_at=time.time(),
                    ttl=DEFAULT_TTL, message_type="train")
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "config": config}), metadata=meta)


class Reporter:
    """The real client mod, once per precision; a Context per client (its privacy state)."""

    def __init__(self, suites: dict, budget: int, seed: int) -> None:
        self.suites, self.budget = suites, budget
        self.hash = combined_hash({m: s.hash for m, s in suites.items()})
        defaults = {"trust.model": "tiny", "trust.lora.r": 4, "trust.lora.alpha": 8,
                    "trust.lora.target-modules": "q_proj,v_proj", "trust.precision": "fp32",
                    "trust.privacy.epsilon": 1e9}
        self.lora = parse_trust_config(defaults).lora_config()
        self.mods = {p: make_trust_mod(suites=suites, defaults=defaults | {"trust.precision": p},
                                       rng=np.random.default_rng(seed)) for p in ("fp32", "bf16")}
        self.contexts: dict[str, Context] = {}

    def report(self, client: str, outgoing: dict, rnd: int, *, private: bool = False,
               noise_multiplier: float = 5.0, precision: str = "fp32") -> dict[str, Any]:
        ctx = self.contexts.setdefault(client, Context(
            run_id=1, node_id=len(self.contexts) + 1, state=RecordDict(), run_config={},
            node_config={"trust.privacy.outgoing": "private" if private else "clear",
                         "trust.privacy.noise-multiplier": noise_multiplier}))

        def app(msg: Message, _ctx: Context) -> Message:
            return Message(RecordDict({"arrays": ArrayRecord(outgoing),
                                       "metrics": MetricRecord({"num-examples": 1})}),
                           reply_to=msg)

        reply = self.mods[precision](train_message(outgoing, rnd, self.hash, self.budget),
                                     ctx, app)
        if reply.has_error():
            raise RuntimeError(reply.error.reason)
        return protocol.split_trust(dict(reply.content["metrics"]))[0]


# ------------------------------------------------------------------------ spoofed reports


def _metric_keys(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, mode, metric) of the present public behaviour metrics of a report."""
    out = []
    for mode in registry.ids():
        for key in report:
            name = key.removeprefix(f"{protocol.PREFIX}{mode}.")
            if (key.startswith(f"{protocol.PREFIX}{mode}.") and not key.endswith(protocol.SUFFIXES)
                    and registry.metric(mode, name) is not None
                    and registry.metric(mode, name).source == "public"
                    and report.get(key + protocol.N, 0) > 0):
                out.append((key, mode, name))
    return out


def shifted(report: dict[str, Any], shift: float, headlines: bool = False) -> dict[str, Any]:
    """Every present value (or each mode's headline) moved by `shift` towards "better"."""
    out = dict(report)
    for key, mode, name in _metric_keys(report):
        metric = registry.get(mode).metric(name)
        if metric is not None and (metric.headline or not headlines):
            out[key] = report[key] - metric.sign * shift
    return out


def inflated(report: dict[str, Any], shift: float, noise: float, post_processing: int
             ) -> dict[str, Any]:
    out = shifted(report, shift)
    for key, _, _ in _metric_keys(report):
        out[key + protocol.NOISE] = noise
    out[protocol.PUBLIC_POST_PROCESSING] = post_processing
    return out


def consistent_noise(report: dict[str, Any], shift: float, multiplier: float,
                     suites: dict) -> dict[str, Any]:
    """A hidden-model report whose noise and stderr fit `multiplier`, with no noise added."""
    out = shifted(report, shift)
    for key, mode, name in _metric_keys(report):
        headline = registry.get(mode).headline
        if name != headline.name:
            out |= protocol.absent(key)
            continue
        lo, hi = headline.span(suites[mode])
        n = int(report[key + protocol.N])
        out[key + protocol.NOISE] = multiplier * (hi - lo)
        out[key + protocol.STDERR] = (hi - lo) / (2 * np.sqrt(n))
    out[protocol.PUBLIC_POST_PROCESSING] = 0
    out[protocol.PRIVACY_NOISE_MULTIPLIER] = multiplier
    return out


# ------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    fractions = [float(f) for f in args.fractions.split(",")]
    suites = load_suites("default")
    honest_kinds = HONEST
    audited: dict[str, int] = Counter()
    flagged: dict[str, int] = Counter()
    checks: dict[str, Counter] = defaultdict(Counter)
    caught: dict[tuple[str, float], int] = Counter()
    trials: dict[tuple[str, float], int] = Counter()
    start = time.perf_counter()
    n_clients = 0
    for seed in range(args.seeds):
        reporter = Reporter(suites, args.budget, seed)
        bridge = get_bridge("tiny", reporter.lora)
        prober = BridgeProber("tiny", reporter.lora, "fp32")
        reference = lora(bridge, 10_000 + seed, 0.05)
        previous: dict[str, dict] = {}
        for rnd in range(0, args.rounds + 1):
            glob = lora(bridge, 20_000 + 100 * seed + rnd, 0.01, reference)
            clients: list[tuple[str, str, dict, dict]] = []  # (client, kind, report, model)
            honest = [] if rnd == 0 else [k for k in honest_kinds for _ in range(args.honest)]
            for i, kind in enumerate(honest):
                name = f"{kind}#{i}"
                model = lora(bridge, seed * 1000 + rnd * 50 + i, 0.02, glob)
                report = reporter.report(
                    name, model, rnd, private=kind == "honest, private",
                    noise_multiplier=args.noise_multiplier,
                    precision="bf16" if "bf16" in kind else "fp32")
                clients.append((name, kind, report, model))
            ref_report = reporter.report("reference", reference, rnd) if rnd else {}
            for j, kind in enumerate(SPOOFERS):
                if rnd == 0 and not kind.startswith("stale"):
                    continue  # round 0 only gives the stale spoofers their first report
                model = lora(bridge, seed * 1000 + rnd * 50 + 30 + j, args.drift, glob)
                true = reporter.report(kind, model, rnd)
                fake = {"perfect": ref_report,
                        "shifted": shifted(true, args.shift),
                        "shifted headlines": shifted(true, args.headline_shift, headlines=True),
                        "noise, pp=1": inflated(true, args.shift, args.noise, 1),
                        "noise, pp=0": inflated(true, args.shift, args.noise, 0),
                        "noise, consistent": consistent_noise(
                            true, args.shift, args.fake_multiplier,
                            client_suites(suites, rnd, args.budget)),
                        "stale": previous.get(kind, {}),
                        "stale, relabelled": previous.get(kind, {}) | {protocol.ROUND: rnd},
                        }[kind]
                previous[kind] = true
                clients.append((kind, kind, fake, model))
            if rnd == 0:
                continue
            n_clients = len(clients)
            measured = {c: prober.probe(m, client_suites(suites, rnd, args.budget))
                        for c, _, _, m in clients}
            replies = [(i, report, c) for i, (c, _, report, _) in enumerate(clients)]

            def cached(client: str, _suites: object, seen: dict = measured) -> Any:
                return seen[client]

            kind_of = {i: kind for i, (_, kind, _, _) in enumerate(clients)}
            for fraction in fractions:
                for draw in range(args.draws):
                    rng = random.Random(f"{seed}/{rnd}/{fraction}/{draw}")
                    result = audit_round(replies, cached, suites=suites,
                                         server_round=rnd, budget=args.budget,
                                         fraction=fraction, rng=rng, alpha=args.alpha)
                    hit = result.flagged
                    for node in result.audited:
                        kind = kind_of[node]
                        audited[kind] += 1
                        flagged[kind] += node in hit
                        if fraction == fractions[-1] and draw == 0:
                            checks[kind].update({a.evidence.get("check", "?") for a in
                                                 result.alarms if node in a.clients})
                    for node, kind in kind_of.items():
                        if kind in SPOOFERS:
                            trials[kind, fraction] += 1
                            caught[kind, fraction] += node in hit and node in result.audited
    seconds = time.perf_counter() - start
    print_table(args, fractions, honest_kinds, n_clients, audited, flagged, checks, caught,
                trials, seconds)


def print_table(args, fractions, honest_kinds, n_clients, audited, flagged, checks, caught,
                trials, seconds) -> None:  # type: ignore[no-untyped-def]
    print(" ".join(["command: python bench/integrity_audit.py", *sys.argv[1:]]))
    print(f"tiny model (LoRA r=4), default suites, probe budget {args.budget} per mode, "
          f"{n_clients} clients per round, {args.seeds} seeds x {args.rounds} rounds x "
          f"{args.draws} audit draws per fraction; alpha {args.alpha}; honest private noise "
          f"multiplier {args.noise_multiplier}; spoofers: drift {args.drift}, shift "
          f"{args.shift}, inflated noise {args.noise}, fake multiplier {args.fake_multiplier}")
    print()
    print("honest false flags (flagged / audited, all fractions and draws)")
    for kind in honest_kinds:
        fired = ", ".join(c for c, _ in checks[kind].most_common())
        print(f"  {kind:<28} {flagged[kind]:>5} / {audited[kind]}"
              + (f"   checks that fired (f={fractions[-1]:g}): {fired}" if fired else ""))
    print()
    head = "".join(f"{f'f={f:g}':>8}" for f in fractions)
    print("spoofer catch rate (audited and flagged / spoofer rounds) by audit fraction")
    print(f"  {'type':<20}{head}   flagged when audited   checks that fired "
          f"(f={fractions[-1]:g})")
    for kind in SPOOFERS:
        rates = "".join(f"{caught[kind, f] / max(1, trials[kind, f]):>8.3f}" for f in fractions)
        when = f"{flagged[kind]}/{audited[kind]}"
        fired = ", ".join(f"{c}" for c, _ in checks[kind].most_common())
        print(f"  {kind:<20}{rates}   {when:>20}   {fired}")
    print()
    print(f"seconds: {seconds:.0f}")


def main(argv: list[str] | None = None) -> int:
    run(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
