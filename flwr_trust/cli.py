"""`flwr-trust` command line: probe a model, list suites, report on a run, verify an audit log.

Exit status, for every command: 0 success; 1 the command ran and found an audit log that does
not verify (verify-log, report; verify-log counts an empty log as not verified); 2 bad input
(unknown option, missing file, a log without rounds to report, ...), always with a one-line
error naming the fix and never a traceback; 3 a bug in flwr-trust (the traceback, to report).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from flwr_trust import modes as registry
from flwr_trust.errors import TrustError
from flwr_trust.probes.suite import ProbeSuite

MDE_P0 = 0.5
"""Base rate of the proportion behind each suite's MDE: the largest variance a proportion can
have, so the printed MDE is an upper bound for any base rate."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (argparse prints the whole usage by default)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}. Fix: see `{self.prog} --help`.\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flwr-trust", description="Behavioral trust checks for federated LLM fine-tuning.",
        epilog="Exit status: 0 success, 1 an audit log does not verify, 2 bad input.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = sub.add_parser("probe", help="score a model on the behavior probe suites",
                           description="Score a model (optionally with a peft adapter) on the "
                           "probe suites of the six silent-failure modes and print its profile.")
    probe.add_argument("--model", default="default",
                       help="'default' (embedded SmolLM2-135M-Instruct), 'tiny' (test model), "
                       "or a local Hugging Face model folder")
    probe.add_argument("--adapter", help="a peft adapter folder (save_pretrained output)")
    probe.add_argument("--suite", default="default",
                       help="'default', a suite .json file, or a folder of suite files")
    probe.add_argument("--modes", default=",".join(registry.ids()),
                       help="comma-separated modes to score (default: all of "
                       f"{','.join(registry.ids())})")
    probe.add_argument("--precision", choices=("bf16", "fp32"), default="fp32",
                       help="fp32 (default) or bf16 autocast (fast only with native bf16)")
    probe.add_argument("--generate", action="store_true",
                       help="also greedy-generate alignment replies and judge refusals (slower)")
    probe.add_argument("--json", type=Path, help="write the profile as JSON to this file")

    suites = sub.add_parser(
        "suites", help="list probe suites: items, hash, groups, detectable effect",
        description="List probe suites with their size, content hash, groups, and the minimum "
        "detectable effect (MDE) of each suite's main metric: the smallest shift of that "
        "proportion a two-sided test at 95% confidence detects with 80% power, computed with "
        f"p0 = {MDE_P0} (the largest variance of a proportion, so an upper bound).")
    suites.add_argument("--suite", default="default",
                        help="'default' (the shipped suites), a suite .json file, or a folder")

    report = sub.add_parser(
        "report", help="render a run's audit log as a self-contained HTML page",
        description="Verify the audit log of a run folder and render it as one self-contained "
        "HTML page that opens offline: a summary per failure mode (OK / WARNING / ALARM / NO "
        "DATA, first alarm round, gate action, culprits), metric plots with confidence and "
        "tolerance bands, loss and update norms beside behavior, refused replies and privacy "
        "spend. A log that does not verify is reported as far as it verifies, under a red "
        "banner.",
        epilog="Exit status: 0 written from an intact log; 1 written, but the log does not "
        "verify; 2 nothing written (no log, empty log, no round records, bad arguments).")
    report.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="the run folder TrustGuard wrote (its run_dir, holding audit.jsonl), "
                        "or the audit.jsonl itself")
    report.add_argument("--out", type=Path, metavar="HTML",
                        help="where to write the page (default: RUN_DIR/report.html)")
    report.add_argument("--json", type=Path, metavar="JSON",
                        help="also write the machine-readable summary to this file")

    verify = sub.add_parser(
        "verify-log", help="check an audit log's hash chain",
        description="Check the hash chain of an audit log and name the first bad record: "
        "edited, deleted, inserted, reordered or truncated records all break it.",
        epilog="Exit status: 0 intact; 1 does not verify (the first bad record and why are "
        "printed); 2 bad input (missing file, malformed --head).")
    verify.add_argument("audit_log", metavar="AUDIT_LOG", type=Path,
                        help="an audit.jsonl, or a run folder holding one")
    verify.add_argument("--head", metavar="HASH",
                        help="a head hash published earlier (AuditLog.head, or the report's "
                        "footer): the log must still contain that record, which also catches "
                        "records cut off the end")
    return parser


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if registry.find(m) is None]
    if bad or not modes:
        raise TrustError(f"Unknown mode(s) {bad or text!r}.",
                         f"Use some of {', '.join(registry.ids())}.")
    return modes


def cmd_probe(args: argparse.Namespace) -> int:
    from flwr_trust.models import adapter_config_from_dir, get_bridge
    from flwr_trust.probes import load_suites
    from flwr_trust.scoring.runner import profile_model

    modes = _modes(args.modes)
    suites = load_suites(args.suite, modes)
    if not suites:
        raise TrustError(f"{args.suite} holds no suite for modes {', '.join(modes)}.",
                         "Pass a suite of one of these modes or choose --modes accordingly.")
    peft_config = adapter_config_from_dir(args.adapter) if args.adapter else None
    bridge = get_bridge(args.model, peft_config)
    if args.adapter:
        bridge.load_adapter_dir(args.adapter)
    name = bridge.base.name + (f" + {Path(args.adapter).name}" if args.adapter else "")
    start = time.perf_counter()
    profile = profile_model(bridge.model, bridge.tokenizer, suites, name=name,
                            precision=args.precision)
    if args.generate and "alignment" in suites:
        from flwr_trust.scoring.generation import generated_alignment_metrics

        profile.metrics["alignment"].update(
            generated_alignment_metrics(bridge.model, bridge.tokenizer, suites["alignment"]))
    elapsed = time.perf_counter() - start
    print(f"model: {name}   suites: {profile.suite_hash[:12]}   "
          f"{profile.extra['tokens']:,} tokens ({profile.extra['forwarded_tokens']:,} run "
          f"through the model) in {elapsed:.1f} s ({args.precision})")
    print(profile.format_table())
    if args.json:
        profile.extra["seconds"] = round(elapsed, 2)
        profile.save_json(args.json)
        print(f"wrote {args.json}")
    return 0


def main_metric(suite: ProbeSuite) -> tuple[str, int, str]:
    """(main metric, its n in this suite, what n counts) of a suite's mode."""
    mode = registry.get(suite.mode)
    return mode.sample.metric or mode.headline.name, mode.sample.count(suite), mode.sample.unit


def cmd_suites(args: argparse.Namespace) -> int:
    from flwr_trust.probes import load_suites
    from flwr_trust.scoring.stats import minimum_detectable_effect

    suites = load_suites(args.suite)
    if not suites:
        raise TrustError(f"{args.suite} holds no suite of a known mode.",
                         f"Pass suites of the modes {', '.join(registry.ids())}.")
    print(f"{'mode':<13} {'suite':<22} {'items':>5}  {'hash':<12}  {'main metric':<20} "
          f"{'n':>4} {'n counts':<22} {'MDE':>5}")
    for mode, suite in suites.items():
        metric, n, unit = main_metric(suite)
        mde = minimum_detectable_effect(n, p0=MDE_P0)
        groups = suite.groups()
        shown = ", ".join(groups[:8]) + (f", ... (+{len(groups) - 8} more)"
                                         if len(groups) > 8 else "")
        print(f"{mode:<13} {suite.name:<22} {len(suite.items):>5}  {suite.short_hash}  "
              f"{metric:<20} {n:>4} {unit:<22} {mde:>5.3f}")
        print(f"{'':<13} groups ({len(groups)}): {shown}")
    print(f"\nMDE: smallest shift of the main metric, as a proportion, that a two-sided test at "
          f"95% confidence detects with 80% power:\n(1.96 + 0.84) * sqrt(p0 (1 - p0) / n) with "
          f"p0 = {MDE_P0}, the largest variance of a proportion, so an upper bound for any "
          "base rate.\nCalibration: n = answerable items, whose accuracy share dominates the "
          "sampling error of the ECE.")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from flwr_trust.report.html import write_report

    out, summary = write_report(args.run_dir, args.out, args.json)
    v = summary["verification"]
    if v["ok"]:
        print(f"audit log: intact, all {v['records']} records verify (head {v['head'][:16]})")
    else:
        print(f"audit log: DOES NOT VERIFY, first bad record {v['first_bad']}: {v['reason']} "
              f"The report shows the {v['records']} records before it.")
    for mode, s in summary["modes"].items():
        detail = []
        if s["first_alarm_round"] is not None:
            detail += [f"first alarm round {s['first_alarm_round']}", s["action"]]
        if s["culprits"]:
            detail.append("culprits " + ", ".join(s["culprits"]))
        detail += [x for x in (s["status_note"], s["no_data_reason"]) if x]
        print(f"  {mode:<13} {s['status']:<8} {' · '.join(detail)}".rstrip())
    print(f"wrote {out}")
    if args.json:
        print(f"wrote {args.json}")
    return 0 if v["ok"] else 1


def cmd_verify_log(args: argparse.Namespace) -> int:
    from flwr_trust.report.audit import verify_log
    from flwr_trust.report.runlog import find_log

    if args.head is not None and not re.fullmatch(r"[0-9a-f]{64}", args.head):
        raise TrustError(f"--head {args.head!r} is not a SHA-256 hash.",
                         "Pass the 64 lowercase hex digits of AuditLog.head.")
    _, log = find_log(args.audit_log)
    result = verify_log(log, head=args.head)
    if result.ok:
        print(f"OK: {log} is intact, all {result.records} records verify. "
              f"Head {result.head}")
        return 0
    if result.first_bad is None:  # an empty file: nothing to check, nothing to trust
        print(f"NOT VERIFIED: {result.reason} Its records were deleted, or the run never wrote "
              "one.")
        return 1
    kept = (f" Records 0-{result.records - 1} verify." if result.records > 1 else
            " Record 0 verifies." if result.records == 1 else " No record verifies.")
    print(f"TAMPERED: {log} does not verify, first bad record {result.first_bad}. "
          f"{result.reason}{kept}")
    return 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "probe": cmd_probe, "suites": cmd_suites, "report": cmd_report,
    "verify-log": cmd_verify_log,
}


def _one_line(exc: Any) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 prints, escaped
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    prog = f"flwr-trust {args.command}"
    try:
        return COMMANDS[args.command](args)
    except TrustError as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{prog}: error: cannot read or write{where} ({exc.strerror or exc}). Fix: check "
              "the path and its permissions.", file=sys.stderr)
        return 2
    except Exception:  # not "does not verify" (1) nor bad input (2): say it is ours
        traceback.print_exc()
        print(f"{prog}: internal error: a bug in flwr-trust, not a verdict on your input. "
              "Fix: report it with the traceback above.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
