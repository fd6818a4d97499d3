"""scripts/stress_gen.py, the seeded random scenario generator.

Its output is replayed here by a validator of its own, written from docs/scenarios.md and
sharing no code with the generator (nor with scripts/activemm_scenario.py). With ACTIVEMM_BIN
set and /dev/kvm usable, short generated scenarios also run on the real tool with
--verify=every-step.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/python/test_stress_gen.py
"""

import collections
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "scripts", "stress_gen.py")
PYTHON = "/usr/bin/python3"

MODEL_OPS = {
    "spawn": {"task", "pages", "cpu"},
    "clone_vm": {"parent", "task"},
    "fork": {"parent", "task"},
    "kthread": {"task"},
    "run": {"cpu", "task"},
    "idle": {"cpu"},
    "exec": {"task", "pages"},
    "exit": {"task"},
    "use_mm": {"task", "mm"},
    "unuse_mm": {"task"},
    "mmap": {"task", "pages"},
    "munmap": {"task", "pages"},
    "mprotect": {"task", "pages", "prot"},
}
MAX_ENTRIES = 64
TOOL_MAX_TASKS = 4096  # idle tasks included
TOOL_MAX_MMS = 4096    # init_mm included


def generate_text(cpus, seed, steps, *extra):
    out = subprocess.run(
        [PYTHON, GEN, "--cpus", str(cpus), "--seed", str(seed), "--steps", str(steps), *extra],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def generate(cpus, seed, steps, *extra):
    return json.loads(generate_text(cpus, seed, steps, *extra))


# ---- an independent replay of the validation rules ----------------------------------------------

class Invalid(AssertionError):
    pass


def replay(doc):
    """Replays every step of `doc` against the spec's rules; raises Invalid naming the step.

    Returns statistics: tasks and mms created, the most live tasks and mms with users at once,
    and the op counts.
    """
    if set(doc) != {"version", "name", "cpus", "lazy_tlb", "steps"}:
        raise Invalid(f"top-level fields {sorted(doc)}")
    if doc["version"] != 1 or not isinstance(doc["name"], str) or not doc["name"]:
        raise Invalid("version/name")
    ncpus = doc["cpus"]
    if type(ncpus) is not int or not 1 <= ncpus <= 64:
        raise Invalid(f"cpus {ncpus!r}")
    if type(doc["lazy_tlb"]) is not bool:
        raise Invalid("lazy_tlb")
    steps = doc["steps"]
    if not steps:
        raise Invalid("no steps")

    tasks = {}  # name -> dict(alive, kthread, mm, using, cpu, execs)
    mms = {"init_mm": {"users": 1, "entries": 0, "mapped": 0}}
    curr = [None] * ncpus  # None: the idle task
    stats = {"max_live_tasks": 0, "max_live_mms": 0, "ops": collections.Counter()}

    def fail(i, op, why):
        raise Invalid(f"step {i} ({op}): {why}")

    def cpu_ok(value):
        return type(value) is int and 0 <= value < ncpus

    def pages_ok(value, high):
        return type(value) is int and 1 <= value <= high

    def new_name(i, op, name):
        if not isinstance(name, str) or not name or name.startswith("idle/"):
            fail(i, op, f"bad task name {name!r}")
        if name in tasks:
            fail(i, op, f"task {name} created twice")

    def new_mm(i, op, name, entries, mapped):
        if name in mms:
            fail(i, op, f"mm {name} already exists")
        mms[name] = {"users": 1, "entries": entries, "mapped": mapped}

    def living(i, op, name):
        t = tasks.get(name)
        if t is None:
            fail(i, op, f"unknown task {name!r}")
        if not t["alive"]:
            fail(i, op, f"task {name} has exited")
        return t

    def current(i, op, name):
        t = living(i, op, name)
        if t["cpu"] is None or curr[t["cpu"]] != name:
            fail(i, op, f"task {name} is not running on any CPU")
        return t

    def mmput(name):
        m = mms[name]
        m["users"] -= 1
        assert m["users"] >= 0
        if m["users"] == 0:
            m["entries"] = m["mapped"] = 0

    def switch(cpu, name):
        if curr[cpu] is not None:
            tasks[curr[cpu]]["cpu"] = None
        if name is not None:
            tasks[name]["cpu"] = cpu
        curr[cpu] = name

    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("op"), str):
            raise Invalid(f"step {i}: not an op")
        op = step["op"]
        last = i == len(steps) - 1
        if op == "checkpoint":
            if not last or set(step) != {"op"}:
                fail(i, op, "the checkpoint must be the last step and alone")
            continue
        if last:
            fail(i, op, "the last step must be a checkpoint")
        if op not in MODEL_OPS:
            fail(i, op, "not a model op (no check/counters expected)")
        extra = set(step) - {"op"} - MODEL_OPS[op]
        if extra:
            fail(i, op, f"unknown fields {sorted(extra)}")
        stats["ops"][op] += 1

        if op == "spawn":
            name = step.get("task")
            new_name(i, op, name)
            pages = step.get("pages", 4)
            if not pages_ok(pages, 32):
                fail(i, op, f"pages {pages!r}")
            if "cpu" in step and not cpu_ok(step["cpu"]):
                fail(i, op, f"cpu {step['cpu']!r}")
            new_mm(i, op, name, pages, pages)
            tasks[name] = dict(alive=True, kthread=False, mm=name, using=False, cpu=None, execs=0)
        elif op in ("clone_vm", "fork"):
            parent = living(i, op, step.get("parent"))
            if parent["mm"] is None or parent["using"]:
                fail(i, op, "parent is a kernel thread")
            name = step.get("task")
            new_name(i, op, name)
            if op == "fork":
                src = mms[parent["mm"]]
                new_mm(i, op, name, src["entries"], src["mapped"])
                mm = name
            else:
                mms[parent["mm"]]["users"] += 1
                mm = parent["mm"]
            tasks[name] = dict(alive=True, kthread=False, mm=mm, using=False, cpu=None, execs=0)
        elif op == "kthread":
            name = step.get("task")
            new_name(i, op, name)
            tasks[name] = dict(alive=True, kthread=True, mm=None, using=False, cpu=None, execs=0)
        elif op == "run":
            cpu = step.get("cpu")
            if not cpu_ok(cpu):
                fail(i, op, f"cpu {cpu!r}")
            t = living(i, op, step.get("task"))
            if t["cpu"] == cpu:
                fail(i, op, "already current on this CPU")
            if t["cpu"] is not None:
                fail(i, op, f"running on CPU {t['cpu']}")
            switch(cpu, step["task"])
        elif op == "idle":
            cpu = step.get("cpu")
            if not cpu_ok(cpu):
                fail(i, op, f"cpu {cpu!r}")
            if curr[cpu] is None:
                fail(i, op, f"CPU {cpu} is already idle")
            switch(cpu, None)
        elif op == "exec":
            name = step.get("task")
            t = current(i, op, name)
            if t["using"]:
                fail(i, op, "kernel thread between use_mm and unuse_mm")
            pages = step.get("pages", 4)
            if not pages_ok(pages, 32):
                fail(i, op, f"pages {pages!r}")
            t["execs"] += 1
            new = f"{name}.exec{t['execs']}"
            new_mm(i, op, new, pages, pages)
            if t["mm"] is not None:
                mmput(t["mm"])
            t["mm"] = new
            t["kthread"] = False
        elif op == "exit":
            name = step.get("task")
            t = current(i, op, name)
            if t["using"]:
                fail(i, op, "kernel thread between use_mm and unuse_mm")
            if t["mm"] is not None:
                mmput(t["mm"])
            t["mm"] = None
            switch(t["cpu"], None)
            t["alive"] = False
        elif op == "use_mm":
            t = current(i, op, step.get("task"))
            if not t["kthread"] or t["using"]:
                fail(i, op, "not a kernel thread free to use an mm")
            mm = step.get("mm")
            if mm not in mms or mm == "init_mm":
                fail(i, op, f"mm {mm!r}")
            if mms[mm]["users"] == 0:
                fail(i, op, f"mm {mm} has no users")
            t["using"] = True
            t["mm"] = mm
        elif op == "unuse_mm":
            t = current(i, op, step.get("task"))
            if not t["kthread"] or not t["using"]:
                fail(i, op, "not a kernel thread using an mm")
            t["using"] = False
            t["mm"] = None
        else:  # mmap, munmap, mprotect
            t = current(i, op, step.get("task"))
            if t["mm"] is None:
                fail(i, op, "kernel thread with no mm")
            m = mms[t["mm"]]
            if m["users"] == 0:
                fail(i, op, f"mm {t['mm']} has no users")
            pages = step.get("pages", 1)
            if not pages_ok(pages, MAX_ENTRIES):
                fail(i, op, f"pages {pages!r}")
            if op == "mmap":
                if m["entries"] + pages > MAX_ENTRIES:
                    fail(i, op, f"{m['entries']} + {pages} entries")
                m["entries"] += pages
                m["mapped"] += pages
            else:
                if pages > m["mapped"]:
                    fail(i, op, f"{pages} pages, {m['mapped']} mapped")
                if op == "munmap":
                    m["mapped"] -= pages
                elif step.get("prot", "r") not in ("r", "rw"):
                    fail(i, op, f"prot {step['prot']!r}")

        stats["max_live_tasks"] = max(stats["max_live_tasks"],
                                      sum(t["alive"] for t in tasks.values()))
        stats["max_live_mms"] = max(stats["max_live_mms"],
                                    sum(m["users"] > 0 for n, m in mms.items() if n != "init_mm"))
        if len(tasks) + ncpus > TOOL_MAX_TASKS or len(mms) > TOOL_MAX_MMS:
            fail(i, op, "too many tasks or mms for the tool")
    if steps[-1] != {"op": "checkpoint"}:
        raise Invalid("the last step is not a checkpoint")
    stats["tasks_created"] = len(tasks)
    stats["mms_created"] = len(mms) - 1
    return stats


def test_the_replay_catches_an_invalid_step():
    doc = {"version": 1, "name": "x", "cpus": 2, "lazy_tlb": True,
           "steps": [{"op": "spawn", "task": "A"}, {"op": "run", "cpu": 0, "task": "A"},
                     {"op": "run", "cpu": 1, "task": "A"}, {"op": "checkpoint"}]}
    with pytest.raises(Invalid, match=r"step 2 \(run\): running on CPU 0"):
        replay(doc)
    doc["steps"][2] = {"op": "munmap", "task": "A", "pages": 5}
    with pytest.raises(Invalid, match=r"step 2 \(munmap\): 5 pages, 4 mapped"):
        replay(doc)
    doc["steps"][2] = {"op": "idle", "cpu": 1}
    with pytest.raises(Invalid, match="already idle"):
        replay(doc)
    doc["steps"][2] = {"op": "exit", "task": "A"}
    assert replay(doc)["tasks_created"] == 1


# ---- the generator ------------------------------------------------------------------------------

def test_same_arguments_same_output_and_seeds_differ():
    a = generate_text(4, 5, 1500)
    assert generate_text(4, 5, 1500) == a
    assert generate_text(4, 6, 1500) != a
    assert generate_text(2, 5, 1500) != a


def test_header_and_lazy_tlb_flag():
    on = generate(3, 11, 50)
    assert on["version"] == 1
    assert on["name"] == "stress-cpus3-seed11-steps50"
    assert on["cpus"] == 3
    assert on["lazy_tlb"] is True
    off = generate(3, 11, 50, "--lazy-tlb", "off")
    assert off["lazy_tlb"] is False
    assert off["name"] == on["name"] and off["steps"] == on["steps"]
    assert generate(3, 11, 50, "--lazy-tlb", "on") == on


@pytest.mark.parametrize("steps", [1, 2, 7, 333])
def test_exactly_k_model_steps_then_a_checkpoint(steps):
    doc = generate(2, 3, steps)
    assert len(doc["steps"]) == steps + 1
    assert doc["steps"][-1] == {"op": "checkpoint"}
    assert all(s["op"] in MODEL_OPS for s in doc["steps"][:-1])
    replay(doc)


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    short = generate(4, 9, 300)["steps"]
    long = generate(4, 9, 1000)["steps"]
    assert long[:300] == short[:300]


@pytest.mark.parametrize("cpus", [1, 2, 4, 16])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_generated_steps_replay_valid(cpus, seed):
    doc = generate(cpus, seed, 2000)
    assert len(doc["steps"]) == 2001
    stats = replay(doc)
    for step in doc["steps"]:
        if "cpu" in step:
            assert 0 <= step["cpu"] < cpus
        if step["op"] in ("spawn", "exec"):
            assert 1 <= step["pages"] <= 8
    # Scheduling and mm work dominate; creation is a minority.
    ops = stats["ops"]
    created = ops["spawn"] + ops["clone_vm"] + ops["fork"] + ops["kthread"]
    assert created < 0.25 * 2000
    assert ops["run"] + ops["idle"] > created


def test_every_op_is_generated():
    stats = replay(generate(4, 1, 2000))
    assert set(stats["ops"]) == set(MODEL_OPS)


def test_long_run_stays_bounded():
    doc = generate(4, 3, 20000)
    assert len(doc["steps"]) == 20001
    stats = replay(doc)
    assert stats["tasks_created"] < 4000
    assert stats["mms_created"] < 4000
    assert stats["max_live_tasks"] <= 40
    assert stats["max_live_mms"] <= 30
    names = [s["task"] for s in doc["steps"] if s["op"] in ("spawn", "clone_vm", "fork", "kthread")]
    assert len(names) == len(set(names)) == stats["tasks_created"]


@pytest.mark.parametrize("args", [
    ["--cpus", "0", "--seed", "1", "--steps", "10"],
    ["--cpus", "65", "--seed", "1", "--steps", "10"],
    ["--cpus", "2", "--seed", "1", "--steps", "0"],
    ["--cpus", "2", "--seed", "1", "--steps", "10", "--lazy-tlb", "maybe"],
    ["--cpus", "2", "--steps", "10"],
])
def test_bad_arguments_are_usage_errors(args):
    out = subprocess.run([PYTHON, GEN, *args], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "usage" in out.stderr


# ---- on the real tool ---------------------------------------------------------------------------

def _kvm_usable():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("cpus", [2, 4])
def test_runs_on_the_tool_with_every_step_verified(cpus, tmp_path):
    binary = os.environ.get("ACTIVEMM_BIN")
    if not binary:
        pytest.skip("ACTIVEMM_BIN is not set (the activemm binary to run scenarios on)")
    if not _kvm_usable():
        pytest.skip("/dev/kvm cannot be opened read-write")
    path = tmp_path / f"stress-{cpus}.json"
    path.write_text(generate_text(cpus, 2024, 300), encoding="utf-8")
    out = subprocess.run([binary, "run", str(path), "--verify=every-step"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
