"""scripts/sweep_gen.py, the scenario generators of the parameter sweeps (scripts/sweep.py).

Pure Python, no KVM: every point of the default and --quick sweeps is replayed by the
independent validator of test_stress_gen.py (written from docs/scenarios.md), and the shape of
each family is checked against docs/sweep.md. The runs on the real tool are in test_sweep.py.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/python/test_sweep_gen.py
"""

import collections
import json
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPTS = os.path.join(ROOT, "scripts")
GEN = os.path.join(SCRIPTS, "sweep_gen.py")

from activemm import sweep, sweep_gen
from pytest_helpers import PYTHON, assert_usage_error
from test_stress_gen import Invalid, model_steps, replay

KS, PPC, IPIS = sweep_gen.KTHREAD_SHARE, sweep_gen.PROCESSES_PER_CPU, sweep_gen.IPIS_VS_CPUS


def doc_of(family, value, seed=1, quick=False):
    return json.loads(sweep_gen.generate(family, value, seed=seed, quick=quick).to_json())


def every_point():
    for fam in sweep.FAMILIES.values():
        for value in fam.points:
            yield fam.name, value, False
        for value in fam.quick_points:
            yield fam.name, value, True


def switches_by_cpu(doc):
    """{cpu: [task or None (idle)]}: every switch in file order, a block's lists in key order,
    the switch to idle after an exit included."""
    current = {}
    out = collections.defaultdict(list)
    for step in model_steps(doc):
        op = step["op"]
        if op == "run":
            out[step["cpu"]].append(step["task"])
            current[step["task"]] = step["cpu"]
        elif op == "idle":
            out[step["cpu"]].append(None)
        elif op == "exit":
            out[current[step["task"]]].append(None)
    return out


# ---- the sweep's points --------------------------------------------------------------------------

def test_the_families_sweep_the_documented_points():
    assert list(sweep.FAMILIES) == [KS, PPC, IPIS]
    assert sweep.FAMILIES[KS].points == tuple(range(0, 91, 10))
    assert sweep.FAMILIES[PPC].points == tuple(range(1, 9))
    assert sweep.FAMILIES[IPIS].points == tuple(range(1, 17))
    for fam in sweep.FAMILIES.values():
        assert 2 <= len(fam.quick_points) <= 5
        assert set(fam.quick_points) <= set(fam.points)
        assert fam.plot.endswith(".png")
    assert set(sweep.FAMILIES[PPC].modes) == {("on", "modeled"), ("off", "modeled"),
                                              ("on", "off"), ("off", "off")}
    assert set(sweep.FAMILIES[KS].modes) == set(sweep.FAMILIES[IPIS].modes) == {
        ("on", "modeled"), ("off", "modeled")}


@pytest.mark.parametrize("family, value, quick", list(every_point()))
def test_every_point_replays_valid(family, value, quick):
    doc = doc_of(family, value, quick=quick)
    stats = replay(doc)
    assert doc["steps"][-1] == {"op": "checkpoint"}
    assert not any(s["op"] in ("check", "counters") for s in doc["steps"])
    # Far below the tool's limits (26000 program steps, 4096 tasks and mms).
    assert stats["model_steps"] + stats["blocks"] < 6000
    assert stats["tasks_created"] < 200 and stats["mms_created"] < 200


# ---- determinism -------------------------------------------------------------------------------

@pytest.mark.parametrize("family, value", [(KS, 30), (PPC, 7), (IPIS, 5)])
def test_same_seed_same_text_and_seeds_differ(family, value):
    a = sweep_gen.generate(family, value, seed=3).to_json()
    assert sweep_gen.generate(family, value, seed=3).to_json() == a
    assert sweep_gen.generate(family, value, seed=4).to_json() != a
    assert sweep_gen.generate(family, value, seed=3, quick=True).to_json() != a


def test_the_command_line_prints_and_writes_the_same_text(tmp_path):
    expected = sweep_gen.generate(IPIS, 3, seed=9, quick=True).to_json()
    out = subprocess.run([PYTHON, GEN, IPIS, "3", "--seed", "9", "--quick"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected
    # Another process, another hash seed: still the same text.
    path = tmp_path / "p.json"
    out = subprocess.run([PYTHON, GEN, IPIS, "3", str(path), "--seed", "9", "--quick"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.returncode == 0, out.stderr
    assert path.read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("args", [
    [KS, "101"], [KS, "-1"], [PPC, "0"], [PPC, "17"], [IPIS, "0"], [IPIS, "65"],
    ["no-such-family", "1"], [KS],
])
def test_bad_arguments_are_usage_errors(args):
    assert_usage_error(GEN, args)


def test_bad_values_raise_value_error():
    with pytest.raises(ValueError, match="share_pct"):
        sweep_gen.kthread_share(100.5, 1)
    with pytest.raises(ValueError, match="processes"):
        sweep_gen.processes_per_cpu(0, 1)
    with pytest.raises(ValueError, match="rounds"):
        sweep_gen.ipis_vs_cpus(2, 1, rounds=57)  # P's page entries would pass 64
    with pytest.raises(ValueError, match="unknown family"):
        sweep_gen.generate("bogus", 1)


# ---- the families' shape -----------------------------------------------------------------------

@pytest.mark.parametrize("share", [0, 10, 50, 90, 100])
def test_kthread_share_is_exact_on_every_cpu(share):
    sizes = sweep_gen.FULL[KS]
    doc = doc_of(KS, share)
    assert doc["cpus"] == sizes["cpus"]
    by_cpu = switches_by_cpu(doc)
    assert sorted(by_cpu) == list(range(sizes["cpus"]))
    for cpu, tasks in by_cpu.items():
        assert len(tasks) == sizes["switches_per_cpu"]
        kernel = [t for t in tasks if t is None or t.startswith("K")]
        assert len(kernel) == round(share * sizes["switches_per_cpu"] / 100)
        # Only the CPU's own tasks, and every switch changes the task.
        assert {t for t in tasks if t is not None} <= (
            {f"P{cpu}.{i}" for i in range(sizes["processes_per_cpu"])} | {f"K{cpu}"})
        assert all(a != b for a, b in zip([None] + tasks, tasks))
    # The CPUs switch concurrently, in blocks of at most BLOCK_STEPS steps per CPU.
    blocks = [s for s in doc["steps"] if s["op"] == "parallel"]
    assert blocks
    assert all(len(lst) <= sweep_gen.BLOCK_STEPS for b in blocks for lst in b["steps"].values())


@pytest.mark.parametrize("processes", list(range(1, 9)))
def test_processes_per_cpu_alternates_processes_and_kernel_threads(processes):
    sizes = sweep_gen.FULL[PPC]
    doc = doc_of(PPC, processes)
    by_cpu = switches_by_cpu(doc)
    assert sorted(by_cpu) == list(range(sizes["cpus"]))
    for cpu, tasks in by_cpu.items():
        users, kernel = tasks[0::2], tasks[1::2]
        assert len(users) == len(kernel) == sizes["slices_per_cpu"]
        assert set(users) == {f"P{cpu}.{i}" for i in range(processes)}
        assert all(t is None or t == f"K{cpu}" for t in kernel)
        if processes >= 2:  # every time slice loads another mm than the one before
            assert all(a != b for a, b in zip(users, users[1:]))
        # Rounds: every process runs once per round.
        counts = collections.Counter(users)
        assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("cpus", [1, 2, 7, 16])
def test_ipis_vs_cpus_spreads_one_process_and_unmaps(cpus):
    rounds = sweep_gen.FULL[IPIS]["rounds"]
    doc = doc_of(IPIS, cpus)
    assert doc["cpus"] == cpus
    assert not any(s["op"] == "parallel" for s in doc["steps"])
    steps = model_steps(doc)
    threads = ["P"] + [f"P.t{c}" for c in range(1, cpus)]
    assert [s["task"] for s in steps if s["op"] == "clone_vm"] == threads[1:]
    assert all(s["parent"] == "P" for s in steps if s["op"] == "clone_vm")
    ops = collections.Counter(s["op"] for s in steps)
    assert ops["munmap"] == ops["mmap"] == rounds
    assert ops["fork"] == ops["exec"] == ops["exit"] == rounds // sweep_gen.FORK_EVERY
    # munmap, mmap and fork are by threads of P; every thread starts on its CPU.
    assert all(s["task"] in threads for s in steps if s["op"] in ("munmap", "mmap"))
    assert all(s["parent"] in threads for s in steps if s["op"] == "fork")
    by_cpu = switches_by_cpu(doc)
    for c in range(cpus):
        assert by_cpu[c][0] == threads[c]
        assert {t for t in by_cpu[c] if t is not None} <= {threads[c], f"K{c}", f"Q{c}"} | {
            s["task"] for s in steps if s["op"] == "fork"}


def test_the_validator_would_catch_a_broken_point():
    doc = doc_of(IPIS, 2, quick=True)
    replay(doc)
    start = doc["steps"].index({"op": "run", "cpu": 0, "task": "P"})
    doc["steps"].insert(start + 1, {"op": "run", "cpu": 1, "task": "P"})  # P runs on CPU 0
    with pytest.raises(Invalid):
        replay(doc)
