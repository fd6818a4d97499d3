#!/usr/bin/python3
"""Seeded scenario generators for the parameter sweeps of scripts/sweep.py (docs/sweep.md).

    /usr/bin/python3 scripts/sweep_gen.py FAMILY VALUE [--seed S] [--quick] [OUT.json]

prints (or writes to OUT.json) the scenario of one sweep point. Three families:

kthread-share (VALUE: 0..100, the percentage of context switches that go to kernel threads)
    4 CPUs, each with 3 processes of its own, a kernel thread of its own (a kworker) and its
    idle task. Every CPU makes the same number of switches; exactly round(VALUE% of them) go
    to the kernel side (the kworker or the idle task), the rest to one of the CPU's processes,
    in a seeded random order (never to the task already current). The CPUs switch
    concurrently (parallel blocks: no shootdowns, so the counters do not depend on the
    interleaving).

processes-per-cpu (VALUE: 1..16, processes per CPU)
    4 CPUs, each with VALUE processes of its own, a kworker and its idle task. Every CPU runs
    the same number of user time slices; after each one the CPU switches to the kworker or to
    idle (a process blocks), then to the next process. The processes take their turns in
    rounds, each round a seeded random permutation of the CPU's processes, and a round never
    starts with the process that ended the one before (with 2 or more processes every switch
    to a process loads a different mm than the last one). With 6 dynamic ASIDs per CPU
    (TLB_NR_DYN_ASIDS) at most 6 address spaces keep their TLB entries across switches:
    init_mm takes one of them whenever it is loaded (lazy TLB off).

ipis-vs-cpus (VALUE: 1..64, the number of CPUs)
    One process P with one thread per CPU (P itself on CPU 0, "P.t<c>" on CPU c), and per
    CPU a kworker "K<c>", a single-threaded process "Q<c>" and the idle task. Every CPU starts
    on its thread of P. Then rounds: each CPU in turn switches to one of its candidates (its
    thread of P, weight 2; K<c>, Q<c> or idle, weight 1 each; never the current task); then
    a thread of P that is running unmaps one page and maps a new one (munmap: a TLB
    shootdown, IPIs to the other CPUs running P non-lazily; mmap: none). Every
    FORK_EVERY-th round that thread also forks a helper "F<r>" that runs on the same CPU, execs
    and exits (fork flushes all of P with freed_tables: IPIs to every CPU in mm_cpumask(P),
    lazy ones included). Plain steps, in order: the counters are those of exactly this
    interleaving.

Determinism: one random.Random per scenario, seeded with the string "FAMILY:VALUE:SEED"
(string seeds hash with SHA-512, independent of PYTHONHASHSEED), and every choice is made from
lists in a fixed order, so the same (family, value, seed, sizes) always gives the same JSON
text. Sizes: FULL (the default sweep) and QUICK (--quick, for tests) below. Names: processes
"P<c>.<i>" (CPU c's i-th), kworkers "K<c>", threads of P "P.t<c>", other processes "Q<c>",
fork helpers "F<r>". Every scenario ends with one checkpoint and carries no check or counters
steps: the sweep reads the counters from the report (activemm run --json).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Any, Callable, Sequence

from activemm.scenario import MAX_CPUS, Scenario

KTHREAD_SHARE = "kthread-share"
PROCESSES_PER_CPU = "processes-per-cpu"
IPIS_VS_CPUS = "ipis-vs-cpus"
FAMILIES = (KTHREAD_SHARE, PROCESSES_PER_CPU, IPIS_VS_CPUS)

MAX_PROCESSES_PER_CPU = 16
FORK_EVERY = 4      # ipis-vs-cpus: a fork + exec + exit helper every FORK_EVERY-th round
BLOCK_STEPS = 32    # steps per CPU list in one parallel block

# Sizes per family: FULL for the default sweep, QUICK for --quick. Measured on a 2-core machine
# with ring 0 emulated (docs/sweep.md): about 1 ms per context switch.
FULL = {
    KTHREAD_SHARE: {"cpus": 4, "processes_per_cpu": 3, "switches_per_cpu": 400},
    PROCESSES_PER_CPU: {"cpus": 4, "slices_per_cpu": 192},
    IPIS_VS_CPUS: {"rounds": 40},
}
QUICK = {
    KTHREAD_SHARE: {"cpus": 4, "processes_per_cpu": 3, "switches_per_cpu": 40},
    PROCESSES_PER_CPU: {"cpus": 4, "slices_per_cpu": 32},
    IPIS_VS_CPUS: {"rounds": 8},
}


def _rng(family: str, value: int, seed: int) -> random.Random:
    return random.Random(f"{family}:{value}:{seed}")


def _check_int(value: Any, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer between {low} and {high}, got {value!r}")
    return value


def _emit_per_cpu(s: Scenario, lists: dict[int, list[dict[str, Any]]]) -> None:
    """Appends per-CPU step lists ({cpu: [step dict]}, all the same length) to `s`: in
    parallel blocks of BLOCK_STEPS steps per CPU when there are 2 or more CPUs, else as plain
    steps."""
    if s.cpus == 1:
        for step in lists[0]:
            fields = {key: value for key, value in step.items() if key != "op"}
            getattr(s, step["op"])(**fields)
        return
    length = max(len(steps) for steps in lists.values())
    for start in range(0, length, BLOCK_STEPS):
        block = {cpu: steps[start:start + BLOCK_STEPS] for cpu, steps in lists.items()
                 if steps[start:start + BLOCK_STEPS]}
        s.parallel(block)


def _processes_and_kworkers(s: Scenario, processes_per_cpu: int) -> dict[int, list[str]]:
    """Spawns, CPU by CPU, `processes_per_cpu` processes "P<c>.<i>" (2 pages each) and then the
    kworker "K<c>"; returns {cpu: [the CPU's process names]}."""
    procs = {c: [f"P{c}.{i}" for i in range(processes_per_cpu)] for c in range(s.cpus)}
    for c in range(s.cpus):
        for p in procs[c]:
            s.spawn(p, pages=2)
        s.kthread(f"K{c}")
    return procs


def _switch_step(cpu: int, task: str | None) -> dict[str, Any]:
    """A run step, or an idle step for task None (the idle task)."""
    if task is None:
        return {"op": "idle", "cpu": cpu}
    return {"op": "run", "cpu": cpu, "task": task}


def kthread_share(share_pct: int, seed: int, cpus: int = 4, processes_per_cpu: int = 3,
                  switches_per_cpu: int = 400) -> Scenario:
    """Family kthread-share: `share_pct` % of every CPU's switches go to a kernel thread."""
    _check_int(share_pct, "share_pct", 0, 100)
    _check_int(cpus, "cpus", 1, MAX_CPUS)
    _check_int(processes_per_cpu, "processes_per_cpu", 2, MAX_PROCESSES_PER_CPU)
    _check_int(switches_per_cpu, "switches_per_cpu", 1, 4000)
    rng = _rng(KTHREAD_SHARE, share_pct, seed)
    s = Scenario(f"sweep {KTHREAD_SHARE} {share_pct}% seed {seed}", cpus=cpus)
    procs = _processes_and_kworkers(s, processes_per_cpu)
    kernel_switches = round(share_pct * switches_per_cpu / 100)
    lists = {}
    for c in range(cpus):
        kinds = [True] * kernel_switches + [False] * (switches_per_cpu - kernel_switches)
        rng.shuffle(kinds)
        current = None  # the idle task
        steps = []
        for to_kernel in kinds:
            pool = [None, f"K{c}"] if to_kernel else procs[c]
            task = rng.choice([t for t in pool if t != current])
            steps.append(_switch_step(c, task))
            current = task
        lists[c] = steps
    _emit_per_cpu(s, lists)
    return s.checkpoint()


def _rounds(rng: random.Random, members: Sequence[str], count: int) -> list[str]:
    """`count` picks from `members`, in rounds that are each a random permutation; with 2 or
    more members no pick repeats the one before it."""
    out = []
    while len(out) < count:
        perm = list(members)
        rng.shuffle(perm)
        if out and len(perm) > 1 and perm[0] == out[-1]:
            swap = rng.randrange(1, len(perm))
            perm[0], perm[swap] = perm[swap], perm[0]
        out.extend(perm)
    return out[:count]


def processes_per_cpu(processes: int, seed: int, cpus: int = 4,
                      slices_per_cpu: int = 192) -> Scenario:
    """Family processes-per-cpu: `processes` processes per CPU take turns, each time slice
    followed by a switch to the kworker or to idle."""
    _check_int(processes, "processes", 1, MAX_PROCESSES_PER_CPU)
    _check_int(cpus, "cpus", 1, MAX_CPUS)
    _check_int(slices_per_cpu, "slices_per_cpu", 1, 2000)
    rng = _rng(PROCESSES_PER_CPU, processes, seed)
    s = Scenario(f"sweep {PROCESSES_PER_CPU} {processes} seed {seed}", cpus=cpus)
    procs = _processes_and_kworkers(s, processes)
    lists = {}
    for c in range(cpus):
        steps = []
        for task in _rounds(rng, procs[c], slices_per_cpu):
            steps.append(_switch_step(c, task))
            steps.append(_switch_step(c, rng.choice([None, f"K{c}"])))
        lists[c] = steps
    _emit_per_cpu(s, lists)
    return s.checkpoint()


def ipis_vs_cpus(cpus: int, seed: int, rounds: int = 40) -> Scenario:
    """Family ipis-vs-cpus: the threads of one process on `cpus` CPUs, with munmaps."""
    _check_int(cpus, "cpus", 1, MAX_CPUS)
    _check_int(rounds, "rounds", 1, 56)  # P's page entries: 4 + one per round, at most 64
    rng = _rng(IPIS_VS_CPUS, cpus, seed)
    s = Scenario(f"sweep {IPIS_VS_CPUS} {cpus} seed {seed}", cpus=cpus)
    thread = ["P"] + [f"P.t{c}" for c in range(1, cpus)]
    s.spawn("P", pages=4)
    for c in range(1, cpus):
        s.clone_vm("P", thread[c])
    for c in range(cpus):
        s.kthread(f"K{c}")
        s.spawn(f"Q{c}", pages=2)
    current: list[str | None] = list(thread)
    for c in range(cpus):
        s.run(c, thread[c])
    for r in range(rounds):
        for c in range(cpus):
            pool = [(thread[c], 2), (f"K{c}", 1), (f"Q{c}", 1), (None, 1)]
            pool = [(task, weight) for task, weight in pool if task != current[c]]
            task = rng.choices([t for t, _ in pool], weights=[w for _, w in pool])[0]
            if task is None:
                s.idle(c)
            else:
                s.run(c, task)
            current[c] = task
        running = [c for c in range(cpus) if current[c] == thread[c]]
        if not running:
            c = rng.randrange(cpus)
            s.run(c, thread[c])
            current[c] = thread[c]
            running = [c]
        c = rng.choice(running)
        s.munmap(thread[c], pages=1)
        s.mmap(thread[c], pages=1)
        if r % FORK_EVERY == FORK_EVERY - 1:
            helper = f"F{r}"
            s.fork(thread[c], helper)
            s.run(c, helper)
            s.exec(helper, pages=1)
            s.exit(helper)
            current[c] = None
    return s.checkpoint()


GENERATORS: dict[str, Callable[..., Scenario]] = {
    KTHREAD_SHARE: kthread_share,
    PROCESSES_PER_CPU: processes_per_cpu,
    IPIS_VS_CPUS: ipis_vs_cpus,
}


def generate(family: str, value: int, seed: int = 1, quick: bool = False) -> Scenario:
    """The scenario of one sweep point, with the FULL (or QUICK) sizes of its family."""
    if family not in GENERATORS:
        raise ValueError(f"unknown family {family!r} (families: {', '.join(FAMILIES)})")
    sizes = (QUICK if quick else FULL)[family]
    return GENERATORS[family](value, seed, **sizes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print the scenario of one sweep point (scripts/sweep.py) as JSON.")
    parser.add_argument("family", choices=FAMILIES)
    parser.add_argument("value", type=int,
                        help="kthread-share: percent 0..100; processes-per-cpu: 1..16; "
                             "ipis-vs-cpus: CPUs 1..64")
    parser.add_argument("out", nargs="?", help="write the JSON here instead of stdout")
    parser.add_argument("--seed", type=int, default=1, help="the seed (default 1)")
    parser.add_argument("--quick", action="store_true", help="the --quick sweep's sizes")
    args = parser.parse_args(argv)
    try:
        scenario = generate(args.family, args.value, args.seed, args.quick)
        if args.out:
            scenario.write(args.out)
        else:
            sys.stdout.write(scenario.to_json())
            sys.stdout.flush()
    except (ValueError, OSError) as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
