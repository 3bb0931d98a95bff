"""The report tells the truth about what it shows (issue 14, point 9): a group past tolerance is
a named warning, not OK; the status grid's legend names every colour it uses (accepted gate
rounds are not the "no data" grey); the probe sample size n is shown per mode; and a panel left
empty for a known reason says the reason (update checks need >= 3 clients per round)."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from flwr_trust.cli import main
from flwr_trust.detect.statistics import MIN_CLIENTS
from flwr_trust.report import grid
from flwr_trust.report.html import render_report
from flwr_trust.report.summary import summarize
from tests.test_report import _round, shared_run, write_log


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


def _start(modes: list[str], **kw: Any) -> tuple[str, dict[str, Any]]:
    payload = {"strategy": "FedAvg", "gate": "quarantine", "model": "tiny", "modes": modes,
               "suite_hash": "ab" * 32, "alpha": 0.05, "update_alpha": 0.01,
               "audit_fraction": 0.0, "secure_aggregation": False}
    return "run-start", payload | kw


def _row(value: float, reference: float, tolerance: float = 0.05, source: str = "server",
         worse: str = "higher") -> dict[str, Any]:
    d = value - reference if worse == "higher" else reference - value
    return {"value": value, "stderr": 0.04, "source": source, "reference": reference,
            "degradation": d, "tolerance": tolerance, "client_median": None,
            "client_spread": None, "n_clients": 0}


def _mode_row(page: str, mode: str) -> str:
    found = re.search(rf'<tr data-mode="{mode}" data-status="[^"]+">.*?</tr>', page, re.S)
    assert found, f"no summary row for {mode}"
    return unescape(found.group(0))


def _notes(svg: str) -> str:
    """The explanatory text of an empty panel (wrapped over several <text> lines)."""
    return unescape(" ".join(re.findall(r'<text class="note"[^>]*>([^<]*)</text>', svg)))


def _chart(page: str, title: str) -> str:
    found = re.search(rf"<svg class=\"chart\"[^>]*><title>{re.escape(title)}</title>.*?</svg>",
                      page, re.S)
    assert found, f"no chart titled {title}"
    return found.group(0)


# ------------------------------------------------------------------------------ 1. groups


def _group_run(path: Path, religion: float) -> Path:
    """bias overall within tolerance; its religion group at `religion` against 0.5 in round
    2; fairness's local loss of client group "night-shift" past tolerance in evaluate round 2
    (clients' median); no alarm or warning anywhere."""
    def bias(group: float) -> dict[str, Any]:
        return {"stereotype-pref": _row(0.51, 0.5), "stereotype-pref/religion": _row(group, 0.5),
                "stereotype-pref/age": _row(0.5, 0.5)}

    loss = {"local-loss": _row(2.0, 2.0, 0.1, "clients"),
            "local-loss/night-shift": _row(2.5, 2.0, 0.1, "clients")}
    return write_log(path, [
        _start(["bias", "fairness"]),
        _round(1, behavior={"bias": bias(0.5)}),
        _round(2, behavior={"bias": bias(religion)}),
        _round(2, phase="evaluate", behavior={"fairness": loss}),
    ])


def test_a_group_past_tolerance_is_a_warning_that_names_the_group(tmp_path, capsys):
    run = _group_run(tmp_path / "run", religion=0.62)
    s = summarize(run)
    bias, fairness = s["modes"]["bias"], s["modes"]["fairness"]
    assert bias["alarms"] == bias["warnings"] == 0  # no test fired: tolerance alone
    assert bias["status"] == "WARNING" and bias["groups"] == ["religion"]
    assert [p["metric"] for p in bias["past_tolerance"]] == ["stereotype-pref/religion"]
    assert bias["past_tolerance"][0]["rounds"] == [2]
    assert "stereotype-pref for group religion (round 2)" in bias["status_note"]
    assert fairness["status"] == "WARNING" and fairness["groups"] == ["night-shift"]
    assert "local-loss for group night-shift" in fairness["status_note"]

    page, _ = render_report(run)
    row = _mode_row(page, "bias")
    assert 'data-status="WARNING"' in row and "religion" in row and ">OK<" not in row
    assert "local-loss for group night-shift" in _mode_row(page, "fairness")
    bias_figure = page[page.index('id="mode-bias"'):page.index('id="mode-fairness"')]
    assert "bias · stereotype-pref/religion" in bias_figure  # the group gets its panel
    assert "bias · stereotype-pref/age" not in bias_figure  # within tolerance: no panel
    cells = dict((tip, fill) for fill, tip in _grid_cells(page))
    assert cells["bias, round 2: stereotype-pref/religion past tolerance (not significant)"] \
        == grid.WARNING.fill
    assert cells["bias, round 1: measured, nothing significant"] == grid.FINE.fill

    assert main(["report", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.split()[:1] == ["bias"])
    assert line.split() == ["bias", "WARNING", *bias["status_note"].split()]
    assert bias["status_note"] == ("past tolerance, not significant: stereotype-pref for group "
                                   "religion (round 2)")


def test_groups_within_tolerance_stay_ok(tmp_path):
    s = summarize(_group_run(tmp_path / "run", religion=0.54))
    bias = s["modes"]["bias"]
    assert bias["status"] == "OK" and bias["past_tolerance"] == [] and bias["groups"] == []
    assert bias["status_note"] == ""


# ------------------------------------------------------------------------------ 2. legend


def _grid_cells(page: str) -> list[tuple[str, str]]:
    """(fill, tooltip) of every cell of the status grid."""
    svg = page[page.index('<svg class="chart grid"'):]
    svg = svg[:svg.index("</svg>")]
    return [(fill, unescape(tip)) for fill, tip in
            re.findall(r'<rect [^>]*fill="([^"]+)"[^>]*><title>([^<]*)</title>', svg)]


def _legend(page: str) -> dict[str, str]:
    """fill -> label of the grid's legend."""
    block = page[page.index('class="legend grid-legend"'):]
    block = block[:block.index("</div>")]
    pairs = re.findall(r'<rect [^>]*fill="([^"]+)"[^>]*/>.*?</svg>([^<]*)</span>', block)
    fills = [f for f, _ in pairs]
    assert len(fills) == len(set(fills)), f"two legend entries share a colour: {pairs}"
    return {f: unescape(label) for f, label in pairs}


def test_grid_legend_names_every_colour_and_grey_only_means_no_data(tmp_path):
    quarantine = {"action": "quarantine", "excluded": [3], "culprits": [], "reason": "r"}
    run = write_log(tmp_path / "run", [
        _start(["bias"]),
        _round(1, behavior={"bias": {"stereotype-pref": _row(0.5, 0.5)}}),
        _round(2, gate=quarantine),
        _round(3, clients={"valid": [1, 2], "refused": {"3": "bad weights"}, "failed": {}}),
        _round(4, phase="evaluate"),  # no train record: the gate has no decision to show
    ])
    page, _ = render_report(run)
    cells, legend = _grid_cells(page), _legend(page)
    assert {fill for fill, _ in cells} <= set(legend), "a grid colour missing from the legend"
    gate = {tip.split(":")[0]: fill for fill, tip in cells if tip.startswith("round ")
            and "refused" not in tip}
    assert gate == {"round 1": grid.ACCEPTED.fill, "round 2": grid.ACTED.fill,
                    "round 3": grid.ACCEPTED.fill, "round 4": grid.NO_DATA.fill}
    assert grid.ACCEPTED.fill != grid.NO_DATA.fill
    assert legend[grid.NO_DATA.fill] == "no data"
    assert "accepted" in legend[grid.ACCEPTED.fill]
    refused = {tip: fill for fill, tip in cells if "refused" in tip}
    assert refused["round 3: 1 replies refused"] == grid.REFUSED.fill
    assert refused["round 1: no reply refused"] == grid.NONE_REFUSED.fill
    grey = [tip for fill, tip in cells if fill == grid.NO_DATA.fill]
    assert grey and all("no data" in tip or "no train record" in tip for tip in grey)


# ------------------------------------------------------------------------------ 3. probe n


def test_probe_n_per_mode_from_the_reference_and_the_clients_reports(tmp_path):
    ref = {"bias": {"stereotype-pref": {"value": 0.5, "stderr": 0.1, "n": 20, "worse": "higher"},
                    "stereotype-pref/religion": {"value": 0.5, "stderr": 0.2, "n": 4},
                    "stereotype-pref/age": {"value": 0.5, "stderr": 0.2, "n": 6}},
           "alignment": {"over-refusal": {"value": "NaN", "stderr": "NaN", "n": 0}}}
    clients = {str(n): {"trust.alignment.refusal-rate": 0.5,
                        "trust.alignment.refusal-rate.n": n_items,
                        "trust.alignment.refusal-rate.stderr": 0.02}
               for n, n_items in ((1, 300), (2, 280), (3, 300))}
    run = write_log(tmp_path / "run", [
        _start(["bias", "alignment", "calibration"]),
        ("reference", {"profile": {"metrics": ref}}),
        _round(1, behavior={"bias": {"stereotype-pref": _row(0.5, 0.5)}},
               client_metrics=clients),
        _round(2, behavior={"bias": {"stereotype-pref": _row(0.5, 0.5)}},
               client_metrics=clients),
    ])
    s = summarize(run)
    assert s["modes"]["bias"]["probe_n"]["server"] == {"min": 20, "max": 20, "group_min": 4,
                                                       "group_max": 6}
    assert s["modes"]["bias"]["probe_n"]["clients"] is None
    alignment = s["modes"]["alignment"]["probe_n"]
    assert alignment["server"] is None  # n = 0: not measured on the server
    assert alignment["clients"] == {"min": 280, "median": 300, "max": 300, "clients": 3,
                                    "reports": 6}
    page, _ = render_report(run)
    assert "server n = 20 (groups 4-6)" in _mode_row(page, "bias")
    assert "clients n = 300 (median of 6 reports from 3 clients, 280-300)" in _mode_row(
        page, "alignment")
    assert '<td class="probe-n">—</td>' in _mode_row(page, "calibration")
    assert "worse if higher · tolerance 0.05 · n = 20" in _chart(page, "bias · stereotype-pref")
    assert "probe server n = 20 (groups 4-6)" in unescape(
        page[page.index('id="mode-bias"'):page.index('id="mode-alignment"')])


def test_the_real_run_shows_the_server_and_client_probe_n(run_dir):
    s = summarize(run_dir)
    text = s["modes"]["alignment"]["probe_n_text"]
    assert text.startswith("server n = 4") and "clients n = 300" in text  # 4 server items


# ------------------------------------------------------------------------------ 4. empty panels


def test_update_panels_with_two_clients_say_how_many_they_need(tmp_path, capsys):
    two = {"valid": [1, 2], "refused": {}, "failed": {}}
    reports = {str(n): {"trust.bias.stereotype-pref": 0.5, "trust.bias.stereotype-pref.n": 20}
               for n in (1, 2)}
    run = write_log(tmp_path / "run", [
        _start(["bias"]),
        _round(1, clients=two, client_metrics=reports, system={}),
        _round(2, clients=two, client_metrics=reports, system={}),
    ])
    s = summarize(run)
    need = f"needs >= {MIN_CLIENTS} clients per round (this run had 2)"
    assert MIN_CLIENTS == 3
    assert s["modes"]["update"]["status"] == "NO DATA"
    assert s["modes"]["update"]["no_data_reason"] == need
    assert s["modes"]["bias"]["status"] == "NO DATA"
    assert s["modes"]["bias"]["no_data_reason"] == (
        "not probed by the server; the clients' median needs >= 3 clients reporting per round "
        "(this run had 2)")
    page, _ = render_report(run)
    assert _notes(_chart(page, "Update norm")) == need
    update = page[page.index('id="mode-update"'):]
    update = update[:update.index("</section>")]
    for title in ("update norm per client", "cosine to the robust mean update"):
        assert _notes(_chart(update, title)) == need
    assert "this run had 2" in _notes(_chart(page, "bias"))
    assert "train_loss" in _notes(_chart(page, "Training loss"))
    assert need in _mode_row(page, "update")
    assert main(["report", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.split()[:1] == ["update"])
    assert line.split() == ["update", "NO", "DATA", *need.split()]


def test_update_panels_under_secure_aggregation_say_so(tmp_path):
    run = write_log(tmp_path / "run", [_start(["bias"], secure_aggregation=True), _round(1)])
    page, s = render_report(run)
    assert s["modes"]["update"]["no_data_reason"].startswith("secure aggregation")
    assert _notes(_chart(page, "Update norm")).startswith("secure aggregation: the server sees")
