"""scripts/activemm_scenario.py, the Python scenario builder, and the canned scenarios built
with it (scripts/scenarios/*.py). Pure Python: no KVM needed.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/python
"""

import ast
import glob
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
SCENARIOS = os.path.join(SCRIPTS, "scenarios")

from activemm import scenario as lib
from activemm.scenario import Scenario
from pytest_helpers import MODEL_OP_FIELDS, PYTHON

# The fields each op may carry (docs/scenarios.md); anything else is an error in the tool.
OP_FIELDS = {
    **MODEL_OP_FIELDS,
    "check": {"mm", "task", "mm_users", "mm_count", "freed", "loaded_on", "lazy_on", "lazy_tlb",
              "pcid"},
    "counters": {"cpu", "lazy_tlb", "pcid"} | set(lib.COUNTER_NAMES),
    "checkpoint": set(),
    "parallel": {"steps"},
}

REQUIRED_SCENARIOS = [
    "threads_then_kthread",
    "last_thread_exit_while_borrowed",
    "exec_from_kthread",
    "kthread_use_mm",
    "mix_4cpu",
]


def one_step(build):
    s = Scenario("t", cpus=4)
    build(s)
    assert len(s) == 1
    return s.to_dict()["steps"][0]


# ---- the JSON of each op ------------------------------------------------------------------

@pytest.mark.parametrize("build, expected", [
    (lambda s: s.spawn("A"), {"op": "spawn", "task": "A"}),
    (lambda s: s.spawn("A", pages=8, cpu=3), {"op": "spawn", "task": "A", "pages": 8, "cpu": 3}),
    (lambda s: s.spawn("A", cpu=0), {"op": "spawn", "task": "A", "cpu": 0}),
    (lambda s: s.clone_vm("A", "A1"), {"op": "clone_vm", "parent": "A", "task": "A1"}),
    (lambda s: s.fork("A", "B"), {"op": "fork", "parent": "A", "task": "B"}),
    (lambda s: s.kthread("K"), {"op": "kthread", "task": "K"}),
    (lambda s: s.run(0, "A"), {"op": "run", "cpu": 0, "task": "A"}),
    (lambda s: s.idle(1), {"op": "idle", "cpu": 1}),
    (lambda s: s.exec("B"), {"op": "exec", "task": "B"}),
    (lambda s: s.exec("B", pages=4), {"op": "exec", "task": "B", "pages": 4}),
    (lambda s: s.exit("A"), {"op": "exit", "task": "A"}),
    (lambda s: s.use_mm("K", "A"), {"op": "use_mm", "task": "K", "mm": "A"}),
    (lambda s: s.unuse_mm("K"), {"op": "unuse_mm", "task": "K"}),
    (lambda s: s.mmap("A"), {"op": "mmap", "task": "A"}),
    (lambda s: s.mmap("A", pages=2), {"op": "mmap", "task": "A", "pages": 2}),
    (lambda s: s.munmap("A", pages=2), {"op": "munmap", "task": "A", "pages": 2}),
    (lambda s: s.munmap("A"), {"op": "munmap", "task": "A"}),
    (lambda s: s.mprotect("A", pages=2), {"op": "mprotect", "task": "A", "pages": 2}),
    (lambda s: s.mprotect("A", pages=2, prot="rw"),
     {"op": "mprotect", "task": "A", "pages": 2, "prot": "rw"}),
    (lambda s: s.mprotect("A", prot="r"), {"op": "mprotect", "task": "A", "prot": "r"}),
    (lambda s: s.check("A"), {"op": "check", "mm": "A"}),
    (lambda s: s.check("A", mm_users=3, mm_count=2, freed=False, loaded_on=[0],
                       lazy_on=[0], lazy_tlb=True),
     {"op": "check", "mm": "A", "mm_users": 3, "mm_count": 2, "freed": False,
      "loaded_on": [0], "lazy_on": [0], "lazy_tlb": True}),
    (lambda s: s.check(task="K", mm_count=0, freed=True, loaded_on=[], lazy_on=[]),
     {"op": "check", "task": "K", "mm_count": 0, "freed": True, "loaded_on": [],
      "lazy_on": []}),
    (lambda s: s.check("A", loaded_on=(3, 1, 2)),
     {"op": "check", "mm": "A", "loaded_on": [1, 2, 3]}),
    (lambda s: s.check("init_mm", loaded_on=[1], lazy_on=[], lazy_tlb=False),
     {"op": "check", "mm": "init_mm", "loaded_on": [1], "lazy_on": [], "lazy_tlb": False}),
    (lambda s: s.counters(cpu=1, lazy_tlb=False, cr3_writes=4),
     {"op": "counters", "cpu": 1, "lazy_tlb": False, "cr3_writes": 4}),
    (lambda s: s.check("A", mm_count=1, lazy_tlb="shootdown", pcid=True),
     {"op": "check", "mm": "A", "mm_count": 1, "lazy_tlb": "shootdown", "pcid": True}),
    (lambda s: s.counters(lazy_tlb=("on", "shootdown"), pcid=["hardware", "modeled"],
                          cr3_writes=2),
     {"op": "counters", "lazy_tlb": ["on", "shootdown"], "pcid": ["hardware", "modeled"],
      "cr3_writes": 2}),
    (lambda s: s.counters(user_bursts=0, context_switches=7),
     {"op": "counters", "context_switches": 7, "user_bursts": 0}),
    (lambda s: s.counters(**{name: i for i, name in enumerate(lib.COUNTER_NAMES)}),
     dict({"op": "counters"}, **{name: i for i, name in enumerate(lib.COUNTER_NAMES)})),
    (lambda s: s.checkpoint(), {"op": "checkpoint"}),
])
def test_op_json_matches_the_spec(build, expected):
    step = one_step(build)
    assert step == expected
    # Same keys in the same order: op first, then the fields as the spec lists them.
    assert list(step) == list(expected)
    assert set(step) - {"op"} <= OP_FIELDS[step["op"]]


def test_every_op_has_a_method():
    for op in OP_FIELDS:
        assert callable(getattr(Scenario, op)), op


def test_top_level_fields():
    s = Scenario("demo", cpus=2).spawn("A")
    d = s.to_dict()
    assert list(d) == ["version", "name", "cpus", "lazy_tlb", "steps"]
    assert d == {"version": 1, "name": "demo", "cpus": 2, "lazy_tlb": True,
                 "steps": [{"op": "spawn", "task": "A"}]}
    assert Scenario("demo", cpus=64, lazy_tlb=False).idle(63).to_dict()["lazy_tlb"] is False


def test_methods_chain_and_keep_file_order():
    s = Scenario("chain", cpus=2)
    assert s.spawn("A").kthread("K").run(0, "A").run(0, "K") is s
    assert [step["op"] for step in s.steps] == ["spawn", "kthread", "run", "run"]


def test_steps_property_is_a_copy():
    s = Scenario("copy", cpus=1).spawn("A")
    s.steps[0]["task"] = "B"
    s.steps.append({"op": "checkpoint"})
    assert s.steps == [{"op": "spawn", "task": "A"}]


def test_to_json_is_stable_indented_and_parses_back():
    def build():
        return (Scenario("stable", cpus=2).spawn("A", pages=2).run(1, "A")
                .check("A", mm_users=1, loaded_on=[1]).counters(cpu=1, user_bursts=1))
    text = build().to_json()
    assert text == build().to_json()
    assert text.endswith("}\n")
    assert json.loads(text) == build().to_dict()
    lines = text.splitlines()
    assert lines[0] == "{" and lines[1] == '  "version": 1,'
    # One step per line, indented under "steps".
    assert lines[6] == '    {"op": "spawn", "task": "A", "pages": 2},'
    assert sum(1 for line in lines if line.startswith('    {"op"')) == 4


def test_parallel_block_json():
    s = Scenario("par", cpus=11).spawn("A").spawn("B").run(0, "A")
    s.parallel({0: Scenario("cpu 0", cpus=11).munmap("A", pages=2).mmap("A"),
                10: [{"op": "run", "cpu": 10, "task": "B"}, {"op": "idle", "cpu": 10}],
                2: Scenario("cpu 2", cpus=11).spawn("C", cpu=2)})
    step = s.steps[-1]
    assert step == {"op": "parallel", "steps": {
        "0": [{"op": "munmap", "task": "A", "pages": 2}, {"op": "mmap", "task": "A"}],
        "10": [{"op": "run", "cpu": 10, "task": "B"}, {"op": "idle", "cpu": 10}],
        "2": [{"op": "spawn", "task": "C", "cpu": 2}]}}
    assert list(step["steps"]) == ["0", "10", "2"]  # the caller's order
    assert json.loads(s.to_json())["steps"][-1] == step
    # A deep copy: changing the copy changes nothing.
    s.steps[-1]["steps"]["0"][0]["pages"] = 9
    assert s.steps[-1] == step
    assert lib.MODEL_OPS == tuple(op for op in OP_FIELDS if op not in
                                  ("check", "counters", "checkpoint", "parallel"))


@pytest.mark.parametrize("lists, message", [
    ({}, r"step 0 \(parallel\): steps must be a non-empty dict"),
    ([[{"op": "idle", "cpu": 0}]], "steps must be a non-empty dict"),
    ({2: []}, r"step 0 \(parallel\): list key must be a CPU number between 0 and 1"),
    ({"0": []}, "list key must be a CPU number"),
    ({0: "idle"}, "the list of CPU 0 must be a list of steps or a Scenario"),
    ({0: [{"cpu": 0}]}, "CPU 0's step 0 must be a step dict with an op"),
    ({0: [{"op": "checkpoint"}]},
     r"CPU 0's step 0 \(checkpoint\): only model steps may run in parallel"),
    ({1: [{"op": "parallel", "steps": {}}]}, "only model steps may run in parallel"),
    ({1: Scenario("c", cpus=2).check("A")}, "only model steps may run in parallel"),
    ({1: [{"op": "run", "cpu": 0, "task": "A"}]},
     r"CPU 1's step 0 \(run\): names CPU 0, but its list runs on CPU 1"),
])
def test_parallel_validation(lists, message):
    s = Scenario("x", cpus=2)
    with pytest.raises(ValueError, match=message):
        s.parallel(lists)
    assert len(s) == 0


# ---- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: Scenario("", cpus=1), "name must be a non-empty string"),
    (lambda: Scenario(None, cpus=1), "name must be a non-empty string"),
    (lambda: Scenario("x", cpus=0), "cpus must be an integer between 1 and 64, got 0"),
    (lambda: Scenario("x", cpus=65), "cpus must be an integer between 1 and 64, got 65"),
    (lambda: Scenario("x", cpus="2"), "cpus must be an integer"),
    (lambda: Scenario("x", cpus=True), "cpus must be an integer"),
    (lambda: Scenario("x", cpus=1, lazy_tlb="on"), "lazy_tlb must be true or false"),
    (lambda: Scenario("x", cpus=2).check("A", lazy_tlb=["on", "often"]),
     r"step 0 \(check\): lazy_tlb: unknown mode 'often'"),
    (lambda: Scenario("x", cpus=2).run(2, "A"),
     r"step 0 \(run\): cpu must be a CPU number between 0 and 1 \(the scenario has 2 CPUs\), "
     "got 2"),
    (lambda: Scenario("x", cpus=2).spawn("A").idle(-1), r"step 1 \(idle\): cpu must be"),
    (lambda: Scenario("x", cpus=2).spawn("A", cpu=5), r"step 0 \(spawn\): cpu must be"),
    (lambda: Scenario("x", cpus=2).run(1.0, "A"), r"step 0 \(run\): cpu must be"),
    (lambda: Scenario("x", cpus=2).run(0, ""), r"step 0 \(run\): task must be a non-empty"),
    (lambda: Scenario("x", cpus=2).spawn(7), r"step 0 \(spawn\): task must be a non-empty"),
    (lambda: Scenario("x", cpus=2).spawn("A", pages=0),
     r"step 0 \(spawn\): pages must be an integer between 1 and 32, got 0"),
    (lambda: Scenario("x", cpus=2).spawn("A", pages=33), "between 1 and 32, got 33"),
    (lambda: Scenario("x", cpus=2).exec("A", pages=0), r"step 0 \(exec\): pages must be"),
    (lambda: Scenario("x", cpus=2).mmap("A", pages=0), r"step 0 \(mmap\): pages must be"),
    (lambda: Scenario("x", cpus=2).munmap("A", pages=65), r"step 0 \(munmap\): pages must be"),
    (lambda: Scenario("x", cpus=2).mprotect("A", pages=1, prot="x"),
     r"step 0 \(mprotect\): prot must be \"r\" or \"rw\", got 'x'"),
    (lambda: Scenario("x", cpus=2).clone_vm("", "A1"), r"step 0 \(clone_vm\): parent"),
    (lambda: Scenario("x", cpus=2).use_mm("K", ""), r"step 0 \(use_mm\): mm must be"),
    (lambda: Scenario("x", cpus=2).check(), r"step 0 \(check\): give exactly one of mm and task"),
    (lambda: Scenario("x", cpus=2).check("A", task="K"), "give exactly one of mm and task"),
    (lambda: Scenario("x", cpus=2).check("A", mm_users=-1), "mm_users must be an integer >= 0"),
    (lambda: Scenario("x", cpus=2).check("A", mm_count="1"), "mm_count must be an integer"),
    (lambda: Scenario("x", cpus=2).check("A", freed=0), "freed must be true or false"),
    (lambda: Scenario("x", cpus=2).check("A", loaded_on=[0, 2]),
     r"loaded_on entry must be a CPU number between 0 and 1"),
    (lambda: Scenario("x", cpus=2).check("A", loaded_on=0), "loaded_on must be a list"),
    (lambda: Scenario("x", cpus=2).check("A", loaded_on=[1, 1]), "loaded_on lists a CPU twice"),
    (lambda: Scenario("x", cpus=2).check("A", loaded_on=[0], lazy_on=[1]),
     r"lazy_on \[1\] must be a subset of loaded_on \[0\]"),
    (lambda: Scenario("x", cpus=2).check("A", lazy_on=[0], lazy_tlb=False),
     "without lazy TLB no CPU is ever lazy"),
    (lambda: Scenario("x", cpus=2).check("A", lazy_tlb=1),
     r"step 0 \(check\): lazy_tlb must be True, False, one of on, shootdown, off or a non-empty "
     "list of them, got 1"),
    (lambda: Scenario("x", cpus=2).check("A", lazy_tlb=[]), "non-empty list"),
    (lambda: Scenario("x", cpus=2).check("A", lazy_on=[0], lazy_tlb="off"),
     "without lazy TLB no CPU is ever lazy"),
    (lambda: Scenario("x", cpus=2).check("A", pcid="real"),
     r"pcid: unknown mode 'real' \(modes: hardware, modeled, off\)"),
    (lambda: Scenario("x", cpus=2).counters(pcid=["off", 1], cr3_writes=1),
     "pcid: unknown mode 1"),
    (lambda: Scenario("x", cpus=2).check("init_mm", mm_count=1),
     "init_mm's reference counts are not modeled"),
    (lambda: Scenario("x", cpus=2).counters(cr3_write=1),
     r"step 0 \(counters\): unknown counter 'cr3_write' \(counters: context_switches, "),
    (lambda: Scenario("x", cpus=2).counters(cpu=2, cr3_writes=1), "cpu must be a CPU number"),
    (lambda: Scenario("x", cpus=2).counters(cr3_writes=-1),
     "counter cr3_writes must be an integer >= 0, got -1"),
    (lambda: Scenario("x", cpus=2).counters(cr3_writes=True), "counter cr3_writes must be"),
    (lambda: Scenario("x", cpus=2).counters(cpu=0), "no counters given"),
    (lambda: Scenario("x", cpus=2).counters(lazy_tlb="yes", cr3_writes=1),
     r"lazy_tlb: unknown mode 'yes' \(modes: on, shootdown, off\)"),
    (lambda: Scenario("empty", cpus=2).to_dict(), "scenario 'empty' has no steps"),
    (lambda: Scenario("empty", cpus=2).to_json(), "has no steps"),
])
def test_validation_errors_are_clear(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_rejected_step_is_not_added():
    s = Scenario("x", cpus=2).spawn("A")
    with pytest.raises(ValueError):
        s.run(7, "A")
    assert len(s) == 1
    # The next step's index in messages is still 1.
    with pytest.raises(ValueError, match=r"step 1 \(idle\)"):
        s.idle(9)


# ---- write() and main() -------------------------------------------------------------------

def small():
    return Scenario("small", cpus=2).spawn("A").run(0, "A").check("A", mm_users=1)


def test_write_round_trips(tmp_path):
    path = tmp_path / "s.json"
    assert small().write(path) == str(path)
    assert path.read_text(encoding="utf-8") == small().to_json()
    assert json.loads(path.read_text(encoding="utf-8")) == small().to_dict()
    assert os.listdir(tmp_path) == ["s.json"]  # no temporary file left behind


def test_write_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("old", encoding="utf-8")
    old_inode = os.stat(path).st_ino
    small().write(str(path))
    # A new file was renamed over the old one (not rewritten in place).
    assert os.stat(path).st_ino != old_inode
    assert json.loads(path.read_text(encoding="utf-8"))["name"] == "small"
    assert os.listdir(tmp_path) == ["s.json"]


def test_write_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text("old", encoding="utf-8")

    def failing_replace(src, dst):
        assert os.path.dirname(os.path.abspath(src)) == str(tmp_path)  # a temp beside it
        assert json.loads(open(src, encoding="utf-8").read())["name"] == "small"
        raise OSError("disk full")

    monkeypatch.setattr(lib.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        small().write(path)
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["s.json"]


def test_write_of_an_invalid_scenario_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        Scenario("empty", cpus=1).write(tmp_path / "e.json")
    assert os.listdir(tmp_path) == []


def test_main_prints_json(capsys):
    assert lib.main(small(), argv=[]) == 0
    out = capsys.readouterr().out
    assert out == small().to_json()


def test_main_writes_a_file_when_given_one(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert lib.main(small(), argv=[str(path)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(path.read_text(encoding="utf-8")) == small().to_dict()


def test_main_reports_an_invalid_scenario(capsys):
    with pytest.raises(SystemExit) as e:
        lib.main(Scenario("empty", cpus=1), argv=[])
    assert e.value.code == 2
    assert "has no steps" in capsys.readouterr().err


def test_main_rejects_extra_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        lib.main(small(), argv=["a.json", "b.json"])
    assert e.value.code == 2
    assert "usage:" in capsys.readouterr().err


# ---- the canned scenarios -----------------------------------------------------------------

SCENARIO_FILES = sorted(glob.glob(os.path.join(SCENARIOS, "*.py")))


def test_the_required_scenarios_exist():
    names = {os.path.splitext(os.path.basename(p))[0] for p in SCENARIO_FILES}
    assert set(REQUIRED_SCENARIOS) <= names


LAZY_MODES = ("on", "shootdown", "off")
PCID_MODES = ("hardware", "modeled", "off")


def modes_of(value, modes, if_true, if_false):
    """The modes a filter value names (docs/scenarios.md, "Mode filters")."""
    if value is None:
        return set(modes)
    if isinstance(value, bool):
        return if_true if value else if_false
    return {value} if isinstance(value, str) else set(value)


def applies(step, lazy, pcid):
    return (lazy in modes_of(step.get("lazy_tlb"), LAZY_MODES, {"on"}, {"off"}) and
            pcid in modes_of(step.get("pcid"), PCID_MODES, {"hardware", "modeled"}, {"off"}))


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=os.path.basename)
def test_canned_scenario_prints_valid_json(path):
    r = subprocess.run([PYTHON, path], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    doc = json.loads(r.stdout)
    assert r.stdout.endswith("}\n")
    assert doc["version"] == 1
    assert set(doc) == {"version", "name", "cpus", "lazy_tlb", "steps"}
    assert doc["name"] == os.path.splitext(os.path.basename(path))[0]
    assert 1 <= doc["cpus"] <= 4
    steps = doc["steps"]
    assert steps
    for i, step in enumerate(steps):
        assert step["op"] in OP_FIELDS, (i, step)
        assert set(step) - {"op"} <= OP_FIELDS[step["op"]], (i, step)
        if "cpu" in step:
            assert 0 <= step["cpu"] < doc["cpus"], (i, step)
    assert any(s["op"] == "check" for s in steps)
    # Expectations for every mode `compare` runs: checks and counters that apply in each.
    for lazy in LAZY_MODES:
        for pcid in PCID_MODES:
            assert any(s["op"] == "check" and applies(s, lazy, pcid) for s in steps), (lazy, pcid)
            assert any(s["op"] == "counters" and applies(s, lazy, pcid) for s in steps), \
                (lazy, pcid)
            # Every run states its CR3 writes split into flushing and TLB-preserving.
            split = {"cr3_writes_flush", "cr3_writes_noflush"}
            assert any(s["op"] == "counters" and applies(s, lazy, pcid) and split <= set(s)
                       for s in steps), (lazy, pcid)
    # Writing the same scenario twice gives the same text.
    again = subprocess.run([PYTHON, path], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert again.stdout == r.stdout


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=os.path.basename)
def test_canned_scenario_has_a_docstring(path):
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    assert doc and len(doc.split()) >= 20


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=os.path.basename)
def test_canned_scenario_writes_a_file(path, tmp_path):
    out = tmp_path / "s.json"
    r = subprocess.run([PYTHON, path, str(out)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert json.loads(out.read_text(encoding="utf-8"))["version"] == 1
