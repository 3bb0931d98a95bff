"""The shipped default probe suites: loadable, valid, reproducible from the generator, sane."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from collections import Counter

import pytest

from flwr_trust.modes import MODES
from flwr_trust.probes.defaults import DATA_DIR as DATA
from flwr_trust.probes.suite import FORMAT, ProbeSuite, load_suite, validate_suite
from tests.helpers.scripts import TOOLS, suite_generator

gen = suite_generator()  # tools/build_default_suites.py

# mode -> {group: item count}
EXPECTED: dict[str, dict[str, int]] = {
    "bias": {"gender": 45, "age": 48, "nationality": 50, "religion": 44, "disability": 48,
             "socioeconomic": 48},
    "fairness": {g: 50 for g in ("man", "woman", "elderly", "teenager", "from-nigeria",
                                 "from-india")},
    "alignment": {c: 45 for c in ("weapons", "malware", "fraud", "harassment", "self-harm",
                                  "drugs", "privacy")},
    "capability": {"arithmetic": 50, "capitals": 40, "science": 40, "opposites": 30, "units": 25,
                   "calendar": 25, "text": 60},
    "calibration": {"answerable": 210, "unanswerable": 60},
    "memorization": {"access-code": 10, "phone-number": 10, "account-number": 10},
}


@pytest.fixture(scope="module")
def built() -> dict[str, ProbeSuite]:
    return gen.build_all()


@pytest.fixture(scope="module")
def shipped() -> dict[str, ProbeSuite]:
    return {mode: load_suite(DATA / f"{mode}.json") for mode in MODES}


def _mc_items(suite: ProbeSuite):
    return [item for item in suite.items if item.choices]


def _arith(a: int, op: str, b: int) -> int:
    return {"plus": a + b, "minus": a - b, "times": a * b}[op]


# ---- format, metadata, sizes ---------------------------------------------------------------


def test_build_all_covers_every_mode(built):
    assert list(built) == list(MODES)


@pytest.mark.parametrize("mode", MODES)
def test_shipped_suite_loads_and_validates(mode, shipped):
    suite = shipped[mode]
    validate_suite(suite)
    assert suite.mode == mode
    assert suite.name == f"default-{mode}"
    assert suite.version == "1.0.0"
    assert suite.license == "Apache-2.0"
    assert suite.source == "flwr-trust (written by the project)"
    assert len(suite.description) > 200 and "\n" not in suite.description
    raw = json.loads((DATA / f"{mode}.json").read_text(encoding="utf-8"))
    assert raw["format"] == FORMAT and raw["hash"] == suite.hash


@pytest.mark.parametrize("mode", MODES)
def test_sizes_and_groups(mode, shipped):
    suite = shipped[mode]
    assert dict(Counter(item.group for item in suite.items)) == EXPECTED[mode]
    assert suite.groups() == sorted(EXPECTED[mode])


@pytest.mark.parametrize("mode", MODES)
def test_ids_unique(mode, shipped):
    ids = [item.id for item in shipped[mode].items]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)


# ---- reproducibility -------------------------------------------------------------------------


def test_generator_is_deterministic(built):
    again = gen.build_all()
    assert {m: s.hash for m, s in again.items()} == {m: s.hash for m, s in built.items()}


def test_generator_does_not_depend_on_hash_seed(built):
    code = ("from build_default_suites import build_all\n"
            "print({m: s.hash for m, s in build_all().items()})")
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(TOOLS)}
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout
        assert out.strip() == str({m: s.hash for m, s in built.items()})


@pytest.mark.parametrize("mode", MODES)
def test_shipped_files_equal_generator_output(mode, built, shipped):
    assert shipped[mode].hash == built[mode].hash
    assert shipped[mode].description == built[mode].description
    assert json.loads((DATA / f"{mode}.json").read_text(encoding="utf-8")) == \
        built[mode].to_json()


def test_main_writes_all_suites(tmp_path, built, capsys):
    gen.main(["--out", str(tmp_path)])
    for mode in MODES:
        assert load_suite(tmp_path / f"{mode}.json").hash == built[mode].hash
        assert (tmp_path / f"{mode}.json").read_bytes() == (DATA / f"{mode}.json").read_bytes()
    assert "memorization" in capsys.readouterr().out


def test_script_runs_from_any_folder(tmp_path):
    """`python tools/build_default_suites.py --out DIR` (the documented command) finds its
    sibling package and source files without any PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, str(TOOLS / "build_default_suites.py"), "--out", "out"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    for mode in MODES:
        assert (tmp_path / "out" / f"{mode}.json").read_bytes() == \
            (DATA / f"{mode}.json").read_bytes()


# ---- content: every mode ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_no_duplicate_or_empty_choices(mode, shipped):
    for item in _mc_items(shipped[mode]):
        assert len(set(item.choices)) == len(item.choices), item.id
        assert all(c.strip() for c in item.choices), item.id


@pytest.mark.parametrize("mode", ["fairness", "capability", "calibration", "memorization"])
def test_answer_choices_start_with_a_space(mode, shipped):
    for item in _mc_items(shipped[mode]):
        assert all(c.startswith(" ") and not c.startswith("  ") for c in item.choices), item.id


@pytest.mark.parametrize("mode", ["fairness", "capability", "calibration"])
def test_answer_positions_are_spread(mode, shipped):
    positions = Counter(item.answer for item in _mc_items(shipped[mode])
                        if item.answer is not None)
    k = max(positions) + 1
    total = sum(positions.values())
    assert all(positions[i] > total / k / 2 for i in range(k)), positions


@pytest.mark.parametrize("mode", ["capability", "calibration", "memorization"])
def test_questions_are_not_repeated(mode, shipped):
    prompts = [i.prompt for i in _mc_items(shipped[mode]) if "largest" not in i.prompt]
    assert len(prompts) == len(set(prompts))


def test_text_is_short(shipped):
    for mode in MODES:
        for item in shipped[mode].items:
            assert len(item.prompt.split()) <= 25, item.id
            assert all(len(c.split()) <= 20 for c in item.choices), item.id
            assert len(item.text.split()) <= 30, item.id


# ---- bias ----------------------------------------------------------------------------------


def test_bias_items_are_minimal_pairs(shipped):
    for item in shipped["bias"].items:
        assert item.prompt == "" and not item.chat and len(item.choices) == 2
        a, b = (c.split() for c in item.choices)
        assert len(a) == len(b) <= 20, item.id
        assert sum(x != y for x, y in zip(a, b, strict=True)) == 1, item.id


def test_bias_stereotype_position_is_balanced(shipped):
    for group in EXPECTED["bias"]:
        answers = [i.answer for i in shipped["bias"].items if i.group == group]
        assert abs(answers.count(0) - answers.count(1)) <= 1, group


def test_bias_group_words_are_balanced(shipped):
    """Each swapped word is as often in a stereotyping as in a contrasting sentence (+-1), so a
    model that merely prefers frequent words scores 0.5."""
    stereo, contrast = Counter(), Counter()
    for item in shipped["bias"].items:
        a, b = item.choices[item.answer].split(), item.choices[1 - item.answer].split()
        k = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        stereo[item.group, a[k]] += 1
        contrast[item.group, b[k]] += 1
    for key in stereo | contrast:
        assert abs(stereo[key] - contrast[key]) <= 1, key


# ---- fairness ------------------------------------------------------------------------------


def _fairness_question(prompt: str) -> str:
    persona, rest = prompt.split(" asks: ", 1)
    return rest


def test_fairness_same_questions_for_every_group(shipped):
    by_group: dict[str, list[tuple[str, tuple[str, ...], int | None]]] = {}
    for item in shipped["fairness"].items:
        assert item.prompt.endswith("\nAnswer:") and len(item.choices) in (3, 4)
        by_group.setdefault(item.group, []).append(
            (_fairness_question(item.prompt), item.choices, item.answer))
    questions = list(by_group.values())
    assert all(q == questions[0] for q in questions)
    assert len({q for q, _, _ in questions[0]}) == len(questions[0])  # 50 distinct questions
    personas = {item.prompt.split(" asks: ")[0] for item in shipped["fairness"].items}
    assert len(personas) == len(EXPECTED["fairness"])


def test_fairness_answers_are_correct(shipped):
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    checked = 0
    for item in shipped["fairness"].items:
        q = _fairness_question(item.prompt)
        got = item.choices[item.answer].strip()
        if m := re.match(r"What is (\d+) (plus|minus|times) (\d+)\?", q):
            assert int(got) == _arith(int(m[1]), m[2], int(m[3])), item.id
            checked += 1
        elif m := re.match(r"What day comes (after|before) (\w+)\?", q):
            step = 1 if m[1] == "after" else -1
            assert got == days[(days.index(m[2]) + step) % 7], item.id
            checked += 1
    assert checked >= 6 * 20


# ---- alignment -----------------------------------------------------------------------------


def test_alignment_labels_and_refusals(shipped):
    items = shipped["alignment"].items
    labels = Counter(item.label for item in items)
    assert labels["harmful"] >= 200 and labels["safe"] >= 100
    assert set(labels) == {"harmful", "safe"}
    for label in ("harmful", "safe"):
        assert Counter(i.group for i in items if i.label == label).keys() == \
            EXPECTED["alignment"].keys()
    for item in items:
        assert item.chat and item.prompt and len(item.choices) == 2
        assert item.choices[item.answer] in gen.alignment.REFUSALS, item.id
        assert item.choices[1 - item.answer] in gen.alignment.COMPLIANCES, item.id
    for label in ("harmful", "safe"):
        answers = [i.answer for i in items if i.label == label]
        assert abs(answers.count(0) - answers.count(1)) <= 1, label


def test_alignment_harmful_and_safe_get_the_same_replies(shipped):
    """Only the request differs between harmful and safe items, not what the replies look like."""
    items = shipped["alignment"].items
    for label in ("harmful", "safe"):
        used = {c for i in items if i.label == label for c in i.choices}
        assert used == set(gen.alignment.REFUSALS) | set(gen.alignment.COMPLIANCES), label


def test_alignment_requests_are_distinct(shipped):
    prompts = [item.prompt for item in shipped["alignment"].items]
    assert len(prompts) == len(set(prompts))


# ---- capability ----------------------------------------------------------------------------


def test_capability_arithmetic_is_correct(shipped):
    items = [i for i in shipped["capability"].items if i.group == "arithmetic"]
    for item in items:
        m = re.fullmatch(r"Question: What is (\d+) (plus|minus|times) (\d+)\?\nAnswer:",
                         item.prompt)
        assert m, item.prompt
        expected = _arith(int(m[1]), m[2], int(m[3]))
        assert item.choices[item.answer] == f" {expected}", item.id
        assert sum(c == f" {expected}" for c in item.choices) == 1


def test_capability_known_facts(shipped):
    facts = {"France": "Paris", "Japan": "Tokyo", "Australia": "Canberra", "Canada": "Ottawa",
             "Kenya": "Nairobi", "Brazil": "Brasilia", "Turkey": "Ankara"}
    answers = {}
    for item in shipped["capability"].items:
        if m := re.match(r"Question: What is the capital of (.+)\?", item.prompt):
            answers[m[1]] = item.choices[item.answer].strip()
    for country, capital in facts.items():
        assert answers[country] == capital
    units = {"How many minutes are in an hour?": " 60", "How many inches are in a foot?": " 12",
             "How many grams are in a kilogram?": " 1000"}
    for item in shipped["capability"].items:
        for q, a in units.items():
            if q in item.prompt:
                assert item.choices[item.answer] == a


def test_capability_calendar_is_correct(shipped):
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    months = ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"]
    lengths = dict(zip(months, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], strict=True))
    for item in (i for i in shipped["capability"].items if i.group == "calendar"):
        got = item.choices[item.answer].strip()
        if m := re.search(r"What day comes (after|before) (\w+)\?", item.prompt):
            step = 1 if m[1] == "after" else -1
            assert got == days[(days.index(m[2]) + step) % 7]
        elif m := re.search(r"Which month comes after (\w+)\?", item.prompt):
            assert got == months[months.index(m[1]) + 1]
        elif m := re.search(r"How many days are in (\w+)\?", item.prompt):
            assert m[1] != "February" and int(got) == lengths[m[1]]
        else:
            pytest.fail(f"unchecked calendar item {item.id}")


def test_capability_text_items(shipped):
    texts = [i for i in shipped["capability"].items if i.group == "text"]
    assert len(texts) >= 60
    for item in texts:
        assert item.text and not item.choices and not item.prompt and item.answer is None
        assert item.text[0].isupper() and item.text.endswith(".")
    assert len({i.text for i in texts}) == len(texts)
    mc = [i for i in shipped["capability"].items if i.choices]
    assert len(mc) >= 200 and all(len(i.choices) == 4 for i in mc)


# ---- calibration ---------------------------------------------------------------------------


def test_calibration_items(shipped):
    items = shipped["calibration"].items
    for item in items:
        assert len(item.choices) == 4 and item.prompt.endswith("\nAnswer:")
        if item.group == "unanswerable":
            assert item.answer is None and item.label == "unanswerable"
        else:
            assert item.group == "answerable" and item.answer is not None and not item.label


def test_calibration_answers_are_correct(shipped):
    checked = Counter()
    letters = string.ascii_uppercase
    for item in (i for i in shipped["calibration"].items if i.answer is not None):
        got = item.choices[item.answer].strip()
        if m := re.search(r"What is (\d+) (plus|minus|times) (\d+)\?", item.prompt):
            assert int(got) == _arith(int(m[1]), m[2], int(m[3])), item.id
            checked["arithmetic"] += 1
        elif m := re.search(r"Roman numeral ([IVXLC]+) stand", item.prompt):
            assert got == str(_from_roman(m[1])), item.id
            checked["roman"] += 1
        elif m := re.search(r'letters are in the word "(\w+)"', item.prompt):
            assert int(got) == len(m[1]), item.id
            checked["letters"] += 1
        elif m := re.search(r"letter comes right (after|before) ([A-Z])", item.prompt):
            step = 1 if m[1] == "after" else -1
            assert got == letters[letters.index(m[2]) + step], item.id
            checked["alphabet"] += 1
        elif "largest" in item.prompt:
            assert int(got) == max(int(c) for c in item.choices), item.id
            checked["largest"] += 1
        elif m := re.search(r"sides does a (\w+) have", item.prompt):
            sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6, "heptagon": 7,
                     "octagon": 8}
            assert int(got) == sides[m[1]], item.id
            checked["shapes"] += 1
    assert checked["arithmetic"] >= 40 and checked["roman"] >= 10 and checked["letters"] >= 10
    assert checked["alphabet"] >= 10 and checked["largest"] >= 10


def _from_roman(numeral: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
    total = 0
    for i, ch in enumerate(numeral):
        v = values[ch]
        total += -v if i + 1 < len(numeral) and values[numeral[i + 1]] > v else v
    return total


def test_calibration_and_capability_ask_different_questions(shipped):
    cap = {i.prompt for i in shipped["capability"].items if i.prompt}
    cal = {i.prompt for i in shipped["calibration"].items}
    assert not cap & cal


# ---- memorization --------------------------------------------------------------------------


def test_memorization_canaries(shipped):
    formats = {"access-code": r" \d{6}", "phone-number": r" \d{3}-\d{3}-\d{4}",
               "account-number": r" \d{8}"}
    items = shipped["memorization"].items
    assert len(items) >= 30
    assert len({i.prompt for i in items}) == len(items)
    secrets = [i.choices[i.answer] for i in items]
    assert len(set(secrets)) == len(secrets)
    for item in items:
        assert len(item.choices) == 20 and len(set(item.choices)) == 20
        assert all(re.fullmatch(formats[item.group], c) for c in item.choices), item.id
        assert item.prompt.endswith(" is") and not item.prompt.endswith(" ")
    assert len({i.answer for i in items}) > 5  # the true secret's position varies
