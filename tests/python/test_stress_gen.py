"""scripts/stress_gen.py, the seeded random scenario generator.

Its output is replayed here by a validator of its own, written from docs/scenarios.md and
sharing no code with the generator (nor with scripts/activemm_scenario.py), parallel blocks
included. With ACTIVEMM_BIN set and /dev/kvm usable, short generated scenarios (with blocks) also
run on the real tool with --verify=every-step.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/python/test_stress_gen.py
"""

import collections
import hashlib
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "scripts", "stress_gen.py")

from pytest_helpers import PYTHON, assert_usage_error, kvm
from pytest_helpers import MODEL_OP_FIELDS as MODEL_OPS

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

    A parallel block's lists are replayed one after the other on the shared state, in the
    order the tool compiles them (keys compared as strings), and checked as docs/scenarios.md
    ("Concurrency") asks: only model steps, each running on its list's CPU, and independent
    lists: no task in two lists (named as task or parent, or the task current on the list's
    CPU before a step, which a switch leaves) and no user mm in two lists (the mm a step names,
    the mm it creates, and the mm of every task it names, before and after the step; the mm of
    the task a switch leaves is not claimed).

    Returns statistics: tasks and mms created, the most live tasks and mms with users at once,
    the op counts (a block's steps included), model steps, blocks, lists and block steps.
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
    stats = {"max_live_tasks": 0, "max_live_mms": 0, "ops": collections.Counter(),
             "model_steps": 0, "blocks": 0, "lists": 0, "block_steps": 0}

    def fail(where, why):
        raise Invalid(f"{where}: {why}")

    def cpu_ok(value):
        return type(value) is int and 0 <= value < ncpus

    def pages_ok(value, high):
        return type(value) is int and 1 <= value <= high

    def new_name(where, name):
        if not isinstance(name, str) or not name or name.startswith("idle/"):
            fail(where, f"bad task name {name!r}")
        if name in tasks:
            fail(where, f"task {name} created twice")

    def new_mm(where, name, entries, mapped):
        if name in mms:
            fail(where, f"mm {name} already exists")
        mms[name] = {"users": 1, "entries": entries, "mapped": mapped}

    def living(where, name):
        t = tasks.get(name)
        if t is None:
            fail(where, f"unknown task {name!r}")
        if not t["alive"]:
            fail(where, f"task {name} has exited")
        return t

    def current(where, name):
        t = living(where, name)
        if t["cpu"] is None or curr[t["cpu"]] != name:
            fail(where, f"task {name} is not running on any CPU")
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

    def apply(where, op, step):
        """One model step on the state."""
        if op not in MODEL_OPS:
            fail(where, "not a model op (no check/counters expected)")
        extra = set(step) - {"op"} - MODEL_OPS[op]
        if extra:
            fail(where, f"unknown fields {sorted(extra)}")
        stats["ops"][op] += 1
        stats["model_steps"] += 1

        if op == "spawn":
            name = step.get("task")
            new_name(where, name)
            pages = step.get("pages", 4)
            if not pages_ok(pages, 32):
                fail(where, f"pages {pages!r}")
            if "cpu" in step and not cpu_ok(step["cpu"]):
                fail(where, f"cpu {step['cpu']!r}")
            new_mm(where, name, pages, pages)
            tasks[name] = dict(alive=True, kthread=False, mm=name, using=False, cpu=None, execs=0)
        elif op in ("clone_vm", "fork"):
            parent = living(where, step.get("parent"))
            if parent["mm"] is None or parent["using"]:
                fail(where, "parent is a kernel thread")
            name = step.get("task")
            new_name(where, name)
            if op == "fork":
                src = mms[parent["mm"]]
                new_mm(where, name, src["entries"], src["mapped"])
                mm = name
            else:
                mms[parent["mm"]]["users"] += 1
                mm = parent["mm"]
            tasks[name] = dict(alive=True, kthread=False, mm=mm, using=False, cpu=None, execs=0)
        elif op == "kthread":
            name = step.get("task")
            new_name(where, name)
            tasks[name] = dict(alive=True, kthread=True, mm=None, using=False, cpu=None, execs=0)
        elif op == "run":
            cpu = step.get("cpu")
            if not cpu_ok(cpu):
                fail(where, f"cpu {cpu!r}")
            t = living(where, step.get("task"))
            if t["cpu"] == cpu:
                fail(where, "already current on this CPU")
            if t["cpu"] is not None:
                fail(where, f"running on CPU {t['cpu']}")
            switch(cpu, step["task"])
        elif op == "idle":
            cpu = step.get("cpu")
            if not cpu_ok(cpu):
                fail(where, f"cpu {cpu!r}")
            if curr[cpu] is None:
                fail(where, f"CPU {cpu} is already idle")
            switch(cpu, None)
        elif op == "exec":
            name = step.get("task")
            t = current(where, name)
            if t["using"]:
                fail(where, "kernel thread between use_mm and unuse_mm")
            pages = step.get("pages", 4)
            if not pages_ok(pages, 32):
                fail(where, f"pages {pages!r}")
            t["execs"] += 1
            new = f"{name}.exec{t['execs']}"
            new_mm(where, new, pages, pages)
            if t["mm"] is not None:
                mmput(t["mm"])
            t["mm"] = new
            t["kthread"] = False
        elif op == "exit":
            name = step.get("task")
            t = current(where, name)
            if t["using"]:
                fail(where, "kernel thread between use_mm and unuse_mm")
            if t["mm"] is not None:
                mmput(t["mm"])
            t["mm"] = None
            switch(t["cpu"], None)
            t["alive"] = False
        elif op == "use_mm":
            t = current(where, step.get("task"))
            if not t["kthread"] or t["using"]:
                fail(where, "not a kernel thread free to use an mm")
            mm = step.get("mm")
            if mm not in mms or mm == "init_mm":
                fail(where, f"mm {mm!r}")
            if mms[mm]["users"] == 0:
                fail(where, f"mm {mm} has no users")
            t["using"] = True
            t["mm"] = mm
        elif op == "unuse_mm":
            t = current(where, step.get("task"))
            if not t["kthread"] or not t["using"]:
                fail(where, "not a kernel thread using an mm")
            t["using"] = False
            t["mm"] = None
        else:  # mmap, munmap, mprotect
            t = current(where, step.get("task"))
            if t["mm"] is None:
                fail(where, "kernel thread with no mm")
            m = mms[t["mm"]]
            if m["users"] == 0:
                fail(where, f"mm {t['mm']} has no users")
            pages = step.get("pages", 1)
            if not pages_ok(pages, MAX_ENTRIES):
                fail(where, f"pages {pages!r}")
            if op == "mmap":
                if m["entries"] + pages > MAX_ENTRIES:
                    fail(where, f"{m['entries']} + {pages} entries")
                m["entries"] += pages
                m["mapped"] += pages
            else:
                if pages > m["mapped"]:
                    fail(where, f"{pages} pages, {m['mapped']} mapped")
                if op == "munmap":
                    m["mapped"] -= pages
                elif step.get("prot", "r") not in ("r", "rw"):
                    fail(where, f"prot {step['prot']!r}")

    def parallel(where, step):
        if set(step) != {"op", "steps"}:
            fail(where, f"fields {sorted(step)}")
        lists = step["steps"]
        if not isinstance(lists, dict) or not lists:
            fail(where, "steps must be a non-empty object of lists")
        stats["blocks"] += 1
        task_owner, mm_owner = {}, {}

        def claim(at, cpu, owner, kind, name):
            if owner.setdefault(name, cpu) != cpu:
                fail(at, f"{kind} {name} is used by the lists of CPU {owner[name]} and CPU {cpu}")

        def claim_task(at, cpu, name):
            claim(at, cpu, task_owner, "task", name)

        def claim_mm(at, cpu, name):
            if name is not None and name != "init_mm":
                claim(at, cpu, mm_owner, "mm", name)

        for key in sorted(lists):  # the tool's order: std::map of strings
            if not key.isdigit() or str(int(key)) != key or not cpu_ok(int(key)):
                fail(where, f"list key {key!r}")
            cpu = int(key)
            inner_steps = lists[key]
            if not isinstance(inner_steps, list) or not inner_steps:
                fail(where, f"the list of CPU {cpu} must be a non-empty list")
            stats["lists"] += 1
            for k, inner in enumerate(inner_steps):
                if not isinstance(inner, dict) or not isinstance(inner.get("op"), str):
                    fail(where, f"CPU {cpu}'s step {k}: not an op")
                op = inner["op"]
                at = f"{where}: CPU {cpu}'s step {k} ({op})"
                if op not in MODEL_OPS:
                    fail(at, "only model steps may run in parallel")
                stats["block_steps"] += 1
                # Where it runs: on the list's CPU.
                if op in ("run", "idle") and inner.get("cpu") != cpu:
                    fail(at, f"names CPU {inner.get('cpu')!r}")
                if op == "spawn" and inner.get("cpu", cpu) != cpu:
                    fail(at, f"spawns on CPU {inner['cpu']!r}")
                if op in ("exec", "exit", "use_mm", "unuse_mm", "mmap", "munmap", "mprotect"):
                    if inner.get("task") != curr[cpu]:
                        fail(at, f"task {inner.get('task')!r} is not current on CPU {cpu}")
                if op in ("clone_vm", "fork"):
                    parent = tasks.get(inner.get("parent"))
                    if parent is not None and parent["cpu"] not in (None, cpu):
                        fail(at, f"parent runs on CPU {parent['cpu']}")
                # Claims before the step: the task it leaves (not its mm), the tasks it names
                # and their mms, the mm it names.
                if curr[cpu] is not None:
                    claim_task(at, cpu, curr[cpu])
                named = [inner[f] for f in ("task", "parent") if inner.get(f) in tasks]
                for name in named:
                    claim_task(at, cpu, name)
                    claim_mm(at, cpu, tasks[name]["mm"])
                if isinstance(inner.get("mm"), str):
                    claim_mm(at, cpu, inner["mm"])
                apply(at, op, inner)
                # After: the tasks it names or creates, and their mms (created, exec'd, used).
                for f in ("task", "parent"):
                    if inner.get(f) in tasks:
                        claim_task(at, cpu, inner[f])
                        claim_mm(at, cpu, tasks[inner[f]]["mm"])

    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("op"), str):
            raise Invalid(f"step {i}: not an op")
        op = step["op"]
        where = f"step {i} ({op})"
        last = i == len(steps) - 1
        if op == "checkpoint":
            if not last or set(step) != {"op"}:
                fail(where, "the checkpoint must be the last step and alone")
            continue
        if last:
            fail(where, "the last step must be a checkpoint")
        if op == "parallel":
            parallel(where, step)
        else:
            apply(where, op, step)

        stats["max_live_tasks"] = max(stats["max_live_tasks"],
                                      sum(t["alive"] for t in tasks.values()))
        stats["max_live_mms"] = max(stats["max_live_mms"],
                                    sum(m["users"] > 0 for n, m in mms.items() if n != "init_mm"))
        if len(tasks) + ncpus > TOOL_MAX_TASKS or len(mms) > TOOL_MAX_MMS:
            fail(where, "too many tasks or mms for the tool")
    if steps[-1] != {"op": "checkpoint"}:
        raise Invalid("the last step is not a checkpoint")
    stats["tasks_created"] = len(tasks)
    stats["mms_created"] = len(mms) - 1
    return stats


def model_steps(doc):
    """The model steps in file order, a block's lists in the tool's (string) key order."""
    out = []
    for step in doc["steps"]:
        if step["op"] == "parallel":
            for key in sorted(step["steps"]):
                out.extend(step["steps"][key])
        elif step["op"] != "checkpoint":
            out.append(step)
    return out


def blocks(doc):
    return [step for step in doc["steps"] if step["op"] == "parallel"]


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


def _block_doc(*lists, cpus=3):
    """A: a process with two threads A1 and A2, A on CPU 0 and A1 on CPU 1; B: a process;
    K: a kernel thread; then the given parallel block(s)."""
    return {"version": 1, "name": "x", "cpus": cpus, "lazy_tlb": True, "steps": [
        {"op": "spawn", "task": "A", "pages": 4}, {"op": "clone_vm", "parent": "A", "task": "A1"},
        {"op": "clone_vm", "parent": "A", "task": "A2"},
        {"op": "spawn", "task": "B"}, {"op": "kthread", "task": "K"},
        {"op": "run", "cpu": 0, "task": "A"}, {"op": "run", "cpu": 1, "task": "A1"},
        *({"op": "parallel", "steps": block} for block in lists),
        {"op": "checkpoint"}]}


def test_the_replay_checks_parallel_blocks():
    # Valid: CPU 0 unmaps from A while CPU 1 leaves A's thread A1 for B (the lazy TLB race),
    # and CPU 2 makes and runs a new process.
    ok = {"0": [{"op": "munmap", "task": "A", "pages": 2}, {"op": "mmap", "task": "A"}],
          "1": [{"op": "run", "cpu": 1, "task": "B"}, {"op": "idle", "cpu": 1}],
          "2": [{"op": "spawn", "task": "C", "cpu": 2}, {"op": "run", "cpu": 2, "task": "C"}]}
    stats = replay(_block_doc(ok))
    assert (stats["blocks"], stats["lists"], stats["block_steps"]) == (1, 3, 6)
    assert stats["model_steps"] == 7 + 6
    bad = [
        # Two lists touch mm A: A's munmap on CPU 0, a thread of A run on CPU 2.
        ({"0": [{"op": "munmap", "task": "A"}], "2": [{"op": "run", "cpu": 2, "task": "A2"}]},
         r"step 7 \(parallel\): CPU 2's step 0 \(run\): mm A is used by the lists of CPU 0 "
         "and CPU 2"),
        # CPU 1 leaves A1, which CPU 2 then runs.
        ({"1": [{"op": "idle", "cpu": 1}], "2": [{"op": "run", "cpu": 2, "task": "A1"}]},
         "task A1 is used by the lists of CPU 1 and CPU 2"),
        # Both lists name K.
        ({"1": [{"op": "run", "cpu": 1, "task": "K"}],
          "2": [{"op": "run", "cpu": 2, "task": "B"}, {"op": "run", "cpu": 2, "task": "K"}]},
         "task K is used by the lists of CPU 1 and CPU 2"),
        # use_mm of an mm another list changes.
        ({"0": [{"op": "mmap", "task": "A"}],
          "2": [{"op": "run", "cpu": 2, "task": "K"}, {"op": "use_mm", "task": "K", "mm": "A"}]},
         "mm A is used by the lists of CPU 0 and CPU 2"),
        # Exiting a thread claims the mm it leaves (the docs: owned by a task a list names).
        ({"0": [{"op": "mmap", "task": "A"}], "1": [{"op": "exit", "task": "A1"}]},
         "mm A is used by the lists of CPU 0 and CPU 1"),
        # Steps that do not run on their list's CPU.
        ({"2": [{"op": "run", "cpu": 1, "task": "B"}]}, r"CPU 2's step 0 \(run\): names CPU 1"),
        ({"2": [{"op": "spawn", "task": "C", "cpu": 0}]}, "spawns on CPU 0"),
        ({"2": [{"op": "mmap", "task": "A"}]}, "task 'A' is not current on CPU 2"),
        ({"2": [{"op": "clone_vm", "parent": "A", "task": "A3"}]}, "parent runs on CPU 0"),
        # No checks inside, and no empty lists.
        ({"0": [{"op": "checkpoint"}]}, "only model steps may run in parallel"),
        ({"0": [{"op": "mmap", "task": "A"}], "1": []}, "must be a non-empty list"),
        ({"3": [{"op": "idle", "cpu": 3}]}, "list key '3'"),
    ]
    for block, message in bad:
        with pytest.raises(Invalid, match=message):
            replay(_block_doc(block))
    # The lists replay in the tool's order, keys as strings: "10" before "2".
    order = {"2": [{"op": "run", "cpu": 2, "task": "B"}],
             "10": [{"op": "spawn", "task": "C", "cpu": 10}]}
    assert replay(_block_doc(order, cpus=11))["blocks"] == 1
    assert [s["op"] for s in model_steps(_block_doc(order, cpus=11))][-2:] == ["spawn", "run"]


# ---- the generator ------------------------------------------------------------------------------

def test_same_arguments_same_output_and_seeds_differ():
    a = generate_text(4, 5, 1500)
    assert generate_text(4, 5, 1500) == a
    assert generate_text(4, 5, 1500, "--parallel", "0.15") == a
    assert generate_text(4, 6, 1500) != a
    assert generate_text(2, 5, 1500) != a
    assert generate_text(4, 5, 1500, "--parallel", "0.3") != a


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
@pytest.mark.parametrize("parallel", ["0", "0.15", "1"])
def test_exactly_k_model_steps_then_a_checkpoint(steps, parallel):
    doc = generate(2, 3, steps, "--parallel", parallel)
    assert doc["steps"][-1] == {"op": "checkpoint"}
    assert all(s["op"] in MODEL_OPS or s["op"] == "parallel" for s in doc["steps"][:-1])
    assert len(model_steps(doc)) == steps
    assert replay(doc)["model_steps"] == steps
    if parallel == "0":
        assert len(doc["steps"]) == steps + 1


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    short = model_steps(generate(4, 9, 300))
    long = model_steps(generate(4, 9, 1000))
    assert len(short) == 300
    assert long[:300] == short
    # Also when the budget cuts a block short (with --parallel 1, nearly every step is in one).
    long = model_steps(generate(4, 9, 40, "--parallel", "1"))
    for k in (1, 2, 3, 5, 8, 13, 21):
        assert model_steps(generate(4, 9, k, "--parallel", "1")) == long[:k], k


@pytest.mark.parametrize("cpus", [1, 2, 4, 16])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_generated_steps_replay_valid(cpus, seed):
    doc = generate(cpus, seed, 2000)
    stats = replay(doc)
    assert stats["model_steps"] == 2000
    for step in model_steps(doc):
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


def test_every_op_is_generated_in_blocks():
    doc = generate(4, 1, 4000, "--parallel", "1")
    ops = {s["op"] for block in blocks(doc) for steps in block["steps"].values() for s in steps}
    assert ops == set(MODEL_OPS)


@pytest.mark.parametrize("cpus", [2, 3, 4, 16])
def test_blocks_appear_with_the_default_parallel(cpus):
    doc = generate(cpus, 8, 3000)
    stats = replay(doc)
    assert stats["model_steps"] == 3000
    found = blocks(doc)
    # P = 0.15 per step drawn, a block holds about 5 steps: about 250 blocks in 3000 steps.
    assert len(found) > 100
    assert 0.2 < stats["block_steps"] / 3000 < 0.7
    sizes = collections.Counter()
    for block in found:
        lists = block["steps"]
        assert 2 <= len(lists) <= min(cpus, 4)
        assert list(lists) == sorted(lists)  # written in the order the tool compiles them
        sizes[len(lists)] += 1
        for key, steps in lists.items():
            assert 1 <= len(steps) <= 4
            for step in steps:
                assert step.get("cpu", int(key)) == int(key)
    assert set(sizes) == set(range(2, min(cpus, 4) + 1))


def test_parallel_0_gives_no_blocks_and_the_single_step_generator():
    text = generate_text(4, 5, 1500, "--parallel", "0")
    assert '"parallel"' not in text
    # The output of the generator before blocks existed, for the same arguments.
    digest = "32047a2b0b14efddec992e5a7cd6bb7a417fd0c65d3d388ad04bc6b05c547540"
    assert hashlib.sha256(text.encode()).hexdigest() == digest
    # One CPU: no blocks whatever --parallel says (and no random draw for them).
    assert generate_text(1, 5, 500, "--parallel", "1") == generate_text(1, 5, 500)
    assert '"parallel"' not in generate_text(1, 5, 500)


def test_long_run_stays_bounded():
    doc = generate(4, 3, 20000)
    stats = replay(doc)
    assert stats["model_steps"] == 20000
    assert stats["blocks"] > 1000
    assert stats["tasks_created"] < 4000
    assert stats["mms_created"] < 4000
    assert stats["max_live_tasks"] <= 40
    assert stats["max_live_mms"] <= 30
    names = [s["task"] for s in model_steps(doc)
             if s["op"] in ("spawn", "clone_vm", "fork", "kthread")]
    assert len(names) == len(set(names)) == stats["tasks_created"]


@pytest.mark.parametrize("args", [
    ["--cpus", "0", "--seed", "1", "--steps", "10"],
    ["--cpus", "65", "--seed", "1", "--steps", "10"],
    ["--cpus", "2", "--seed", "1", "--steps", "0"],
    ["--cpus", "2", "--seed", "1", "--steps", "10", "--lazy-tlb", "maybe"],
    ["--cpus", "2", "--steps", "10"],
    ["--cpus", "2", "--seed", "1", "--steps", "10", "--parallel", "-0.1"],
    ["--cpus", "2", "--seed", "1", "--steps", "10", "--parallel", "1.5"],
    ["--cpus", "2", "--seed", "1", "--steps", "10", "--parallel", "nan"],
    ["--cpus", "2", "--seed", "1", "--steps", "10", "--parallel", "some"],
])
def test_bad_arguments_are_usage_errors(args):
    assert_usage_error(GEN, args)


# ---- on the real tool ---------------------------------------------------------------------------

@pytest.mark.parametrize("cpus", [2, 4, 8])
def test_runs_on_the_tool_with_every_step_verified(cpus, tmp_path, kvm):
    binary = os.environ.get("ACTIVEMM_BIN")
    if not binary:  # the `python` ctest sets it; a bare pytest run may not
        pytest.skip("ACTIVEMM_BIN is not set (the activemm binary to run scenarios on)")
    text = generate_text(cpus, 2024, 300)
    assert blocks(json.loads(text)), "no parallel block to run"
    path = tmp_path / f"stress-{cpus}.json"
    path.write_text(text, encoding="utf-8")
    out = subprocess.run([binary, "run", str(path), "--verify=every-step"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
