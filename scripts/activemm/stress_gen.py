#!/usr/bin/python3
"""A seeded random scenario generator for stress runs (docs/scenarios.md's format).

    /usr/bin/python3 scripts/stress_gen.py --cpus N --seed S --steps K [--parallel P]
                                           [--lazy-tlb on|off]

prints one scenario (version 1, name "stress-cpusN-seedS-stepsK", N CPUs) on stdout: exactly K
model steps, then one {"op": "checkpoint"}. Some of the model steps are grouped in parallel blocks
(below); a block's steps count, the block itself does not. It carries no check or counters
steps; run it with `activemm run FILE --verify=every-step` so the host verifies the invariants
after every step (after a block: after the whole block).

The output depends only on (cpus, seed, steps, parallel) (--lazy-tlb only sets the file's
"lazy_tlb"), and the model steps of a K-step scenario, read in file order (a block's lists in
key order), are a prefix of a longer one's: one random.Random(seed) drives every choice,
candidates are always taken from lists in creation or CPU order (never from a set or a dict's
iteration order), and no limit depends on K (the last block is only cut short). With
--parallel 0 (or 1 CPU) the output is the same as before parallel blocks existed.

Parallel blocks (docs/scenarios.md, "Concurrency"): before each step, with probability P
(--parallel, default PARALLEL = 0.15) and at least 2 CPUs, the generator emits a block instead:
2..min(cpus, BLOCK_MAX_CPUS) distinct random CPUs, each with a list of 1..LIST_MAX_STEPS steps
drawn by the same machinery restricted to that CPU (run/idle name it, the mm ops and
exec/exit/use_mm/unuse_mm are by its current task, spawn names it or no CPU, clone_vm/fork take
a parent current there or not running) and to the tasks and mms no other list of the block has
claimed. The lists are generated, and written, in the order the tool compiles them (CPU numbers
compared as strings: "10" before "2"), each replayed on the state the previous ones left. A
step's claims are a superset of the tool's: the task current on the list's CPU before the step
(the task a switch leaves; not its mm), the task and parent it names and their mms before and
after the step, the mm it names (use_mm) and the task and mm it creates. A list that finds no
legal step ends early; a block left with a single list is written as plain steps.

Every step it emits is one the tool's validator accepts: the generator replays the same state
the validator keeps (live and dead tasks, kernel thread or user task, each CPU's current task,
each task's mm, use_mm, mm_users and the page entries / mapped pages of every mm, exec
counters) and picks only among the steps that are legal in it. Names: tasks are "p<n>"
(spawn), "t<n>" (clone_vm thread), "f<n>" (fork child), "k<n>" (kthread), with n counting
every task created; mms are named as the spec says (the spawned or forked task's name, or
"<task>.exec<i>").

munmap and mprotect are generated on any mm, also one that other CPUs are running at the time,
which is what exercises the TLB shootdown IPIs. SHOOTDOWN_SAFE = True (below) adds one rule
more than the validator's for a model without shootdowns: munmap and mprotect only on an mm
that no other CPU is running (no other CPU's current task has it as its mm; a CPU that only
has it lazily loaded compares the mm's tlb_gen before it uses it again).

Mix of steps: WEIGHTS below (relative; an op with no legal candidate in the current state is
left out and the rest renormalised). Scheduling and mm ops dominate; creating tasks is about
12-15% of the steps and exits balance it. The population is bounded: at most MAX_LIVE_TASKS live
tasks and MAX_LIVE_MMS mms with users; above SOFT_LIVE_TASKS exits get EXIT_BOOST times their
weight. Over a whole run at most TASK_BUDGET tasks and MM_BUDGET mms are created (the tool
allows 4096 of each, idle tasks and init_mm included), so even very long runs stay valid:
once a budget is spent, only the other ops are generated, and the last live task never exits
then, so some run or idle step is always legal. (The tool itself runs at most about 26000
steps per file: its program area holds 26213, the final verification and one head per parallel
block included; with the default P a block comes about every 12 model steps.)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Any, Iterable, Sequence

from activemm.scenario import MAX_CPUS, MAX_PAGE_ENTRIES, Scenario

# ---- tunables ---------------------------------------------------------------------------------

# Relative weights of the ops. Creation (spawn + clone_vm + fork + kthread) is 10 of 87; since
# the ops of a current task drop out while CPUs are idle, that makes about 12-15% of the steps
# (about 2500 tasks and 1900 mms in 20000 steps on 4 CPUs). exec both creates an mm and (for a
# user task) releases one.
WEIGHTS = {
    "spawn": 3,      # a new process with 1..SPAWN_MAX_PAGES pages, sometimes on a given CPU
    "clone_vm": 3,   # a thread of a live user task
    "fork": 2,       # a child process with a copy of a live user task's mm
    "kthread": 2,    # a kernel thread
    "run": 30,       # a CPU switches to a live task that runs nowhere
    "idle": 6,       # a busy CPU switches to its idle task
    "exec": 3,       # the current task (user, or kthread not in use_mm) gets a new mm
    "exit": 7,       # the current task (not a kthread in use_mm) exits
    "use_mm": 6,     # the current kernel thread borrows an mm with users
    "unuse_mm": 5,   # ... and gives it back
    "mmap": 8,       # by the current task on its mm (user task or kthread in use_mm)
    "munmap": 6,
    "mprotect": 6,
}
SPAWN_MAX_PAGES = 8      # spawn and exec: 1..8 data pages
MAP_MAX_PAGES = 8        # mmap, munmap, mprotect: 1..8 pages (within the mm's limits)
SPAWN_CPU_CHANCE = 0.5   # how often spawn names the CPU that executes it
MAX_LIVE_TASKS = 40      # no creation at this many live tasks
SOFT_LIVE_TASKS = 30     # from here on exits weigh EXIT_BOOST times more
EXIT_BOOST = 3
MAX_LIVE_MMS = 30        # no new mm at this many mms with users (mm_users > 0)
TASK_BUDGET = 3900       # tasks created over the whole run (tool: 4096 with the idle tasks)
MM_BUDGET = 3900         # mms created over the whole run (tool: 4096 with init_mm)
SHOOTDOWN_SAFE = False   # True: munmap/mprotect only on an mm no other CPU runs (see above)
PARALLEL = 0.15          # default --parallel: the chance of a block instead of a single step
BLOCK_MAX_CPUS = 4       # a block has 2..min(cpus, BLOCK_MAX_CPUS) lists
LIST_MAX_STEPS = 4       # a list has 1..LIST_MAX_STEPS steps (fewer if none is legal)

OPS = tuple(WEIGHTS)  # a fixed order for the weighted choice


class _Task:
    __slots__ = ("name", "kthread", "mm", "using_mm", "cpu", "execs", "alive")

    def __init__(self, name: str, kthread: bool, mm: _Mm | None) -> None:
        self.name = name
        self.kthread = kthread  # created by kthread and has not exec'd
        self.mm = mm            # the _Mm it owns (a kthread: the one it uses), or None
        self.using_mm = False   # a kthread between use_mm and unuse_mm
        self.cpu = -1           # the CPU it is current on, or -1
        self.execs = 0
        self.alive = True


class _Mm:
    __slots__ = ("name", "users", "entries", "mapped")

    def __init__(self, name: str, entries: int, mapped: int) -> None:
        self.name = name
        self.users = 1
        self.entries = entries  # page entries, mapped and unmapped (<= MAX_PAGE_ENTRIES)
        self.mapped = mapped


class _Block:
    """The claims of the parallel block being generated, and the CPU of the list being generated.

    The dicts are looked up, never iterated, so they cannot make the output depend on hashing.
    """
    __slots__ = ("cpu", "task_owner", "mm_owner", "start_mms")

    # The types __init__ cannot show (it assigns empty dicts).
    task_owner: dict[_Task, int]
    mm_owner: dict[_Mm, int]

    def __init__(self, start_mms: list[_Mm]) -> None:
        self.cpu = -1
        self.task_owner = {}        # _Task -> the CPU of the list that claimed it
        self.mm_owner = {}          # _Mm -> the CPU of the list that claimed it
        self.start_mms = start_mms  # the mms of the tasks current at the block's start

    def free_task(self, task: _Task) -> bool:
        return self.task_owner.get(task, self.cpu) == self.cpu

    def free_mm(self, mm: _Mm | None) -> bool:
        return mm is None or self.mm_owner.get(mm, self.cpu) == self.cpu

    def claim(self, tasks: Iterable[_Task], mms: Iterable[_Mm | None]) -> None:
        for task in tasks:
            if not self.free_task(task):  # the candidates exclude this: a generator bug
                raise RuntimeError(f"task {task.name} claimed by CPUs "
                                   f"{self.task_owner[task]} and {self.cpu}")
            self.task_owner[task] = self.cpu
        for mm in mms:
            if mm is None:
                continue
            if not self.free_mm(mm):
                raise RuntimeError(f"mm {mm.name} claimed by CPUs "
                                   f"{self.mm_owner[mm]} and {self.cpu}")
            self.mm_owner[mm] = self.cpu


def _always(_: Any) -> bool:
    return True


class Generator:
    """Replays the validator's state and emits random legal steps into a Scenario."""

    # The types __init__ cannot show (it assigns empty lists and dicts, and None).
    curr: list[_Task | None]
    live_tasks: list[_Task]
    live_mms: list[_Mm]
    tasks_by_name: dict[str, _Task]
    mms_by_name: dict[str, _Mm]
    scenario: Scenario | None  # set by generate(), and by _block() while it runs
    block: _Block | None

    def __init__(self, cpus: int, seed: int, lazy_tlb: bool = True,
                 parallel: float = PARALLEL) -> None:
        if not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus must be 1..{MAX_CPUS}, got {cpus!r}")
        if not isinstance(parallel, (int, float)) or not 0 <= parallel <= 1:
            raise ValueError(f"parallel must be a probability 0..1, got {parallel!r}")
        self.cpus = cpus
        self.seed = seed
        self.lazy_tlb = lazy_tlb
        self.parallel = parallel
        self.rng = random.Random(seed)
        self.curr = [None] * cpus   # per CPU: the current _Task, None for the idle task
        self.live_tasks = []        # in creation order
        self.live_mms = []          # mms with users, in creation order
        self.tasks_by_name = {}     # every task created (looked up, never iterated)
        self.mms_by_name = {}       # every mm created (looked up, never iterated)
        self.tasks_created = 0
        self.mms_created = 0
        self.scenario = None
        self.block = None           # the _Block while a parallel block's list is generated

    # ---- state helpers ------------------------------------------------------------------

    def _new_task(self, prefix: str, kthread: bool, mm: _Mm | None) -> _Task:
        self.tasks_created += 1
        task = _Task(f"{prefix}{self.tasks_created}", kthread, mm)
        self.live_tasks.append(task)
        self.tasks_by_name[task.name] = task
        return task

    def _new_mm(self, name: str, entries: int, mapped: int) -> _Mm:
        self.mms_created += 1
        mm = _Mm(name, entries, mapped)
        self.live_mms.append(mm)
        self.mms_by_name[name] = mm
        return mm

    def _drop_user(self, mm: _Mm) -> None:
        mm.users -= 1
        if mm.users == 0:  # mmput of the last user: exit_mmap frees every entry
            mm.entries = mm.mapped = 0
            self.live_mms.remove(mm)

    def _switch(self, cpu: int, task: _Task | None) -> None:
        old = self.curr[cpu]
        if old is not None:
            old.cpu = -1
        if task is not None:
            task.cpu = cpu
        self.curr[cpu] = task

    def _current(self) -> list[_Task]:
        return [t for t in self.curr if t is not None]  # in CPU order

    def _can_create_task(self) -> bool:
        return self.tasks_created < TASK_BUDGET and len(self.live_tasks) < MAX_LIVE_TASKS

    def _can_create_mm(self) -> bool:
        return self.mms_created < MM_BUDGET and len(self.live_mms) < MAX_LIVE_MMS

    def _acts_on_mm(self, task: _Task) -> bool:
        # A task acting on current->mm: a user task, or a kthread in use_mm whose mm still has
        # users (exit_mmap has torn the pages down otherwise).
        return task.mm is not None and task.mm.users > 0

    def _shootdown_free(self, task: _Task) -> bool:
        if not SHOOTDOWN_SAFE:
            return True
        if self.block is not None and any(mm is task.mm for mm in self.block.start_mms):
            return False  # another CPU may still run it while the block runs
        return all(other is task or other.mm is not task.mm for other in self._current())

    # ---- candidates per op ------------------------------------------------------------------

    def _candidates(self) -> dict[str, Sequence[_Task | int | None]]:
        """{op: [candidates]} for every op that has a legal step now (in a parallel block's
        list: one that runs on the list's CPU and touches nothing another list claimed)."""
        blk = self.block
        if blk is None:
            current = self._current()
            free_task = free_mm = _always
            user_parents = [t for t in self.live_tasks if t.mm is not None and not t.using_mm]
        else:
            here = self.curr[blk.cpu]
            current = [here] if here is not None else []
            free_task, free_mm = blk.free_task, blk.free_mm
            # A parent current on another CPU would run the step there.
            user_parents = [t for t in self.live_tasks
                            if t.mm is not None and not t.using_mm and t.cpu in (-1, blk.cpu)
                            and free_task(t) and free_mm(t.mm)]
        # The current task's own steps: it and its mm (before and after) are claimed.
        current = [t for t in current if free_mm(t.mm)]
        c: dict[str, Sequence[_Task | int | None]] = {}
        if self._can_create_task():
            if self._can_create_mm():
                c["spawn"] = [None]
                if user_parents:
                    c["fork"] = user_parents
            if user_parents:
                c["clone_vm"] = user_parents
            c["kthread"] = [None]
        runnable = [t for t in self.live_tasks if t.cpu < 0 and free_task(t) and free_mm(t.mm)]
        if runnable:
            c["run"] = runnable
        if blk is None:
            busy = [cpu for cpu in range(self.cpus) if self.curr[cpu] is not None]
        else:
            busy = [blk.cpu] if self.curr[blk.cpu] is not None else []
        if busy:
            c["idle"] = busy
        if self.mms_created < MM_BUDGET:
            # A user task whose mm it alone uses gives one back; anyone else adds one.
            execs = [t for t in current if not t.using_mm and
                     (len(self.live_mms) < MAX_LIVE_MMS or
                      (t.mm is not None and t.mm.users == 1))]
            if execs:
                c["exec"] = execs
        # With the task budget spent the last live task stays, so run or idle is always legal.
        if self.tasks_created < TASK_BUDGET or len(self.live_tasks) > 1:
            exits = [t for t in current if not t.using_mm]
            if exits:
                c["exit"] = exits
        if self._usable_mms():
            use = [t for t in current if t.kthread and not t.using_mm]
            if use:
                c["use_mm"] = use
        unuse = [t for t in current if t.using_mm]
        if unuse:
            c["unuse_mm"] = unuse
        on_mm = [t for t in current if self._acts_on_mm(t)]
        mmap = [t for t in on_mm if t.mm.entries < MAX_PAGE_ENTRIES]
        if mmap:
            c["mmap"] = mmap
        unmap = [t for t in on_mm if t.mm.mapped > 0 and self._shootdown_free(t)]
        if unmap:
            c["munmap"] = unmap
            c["mprotect"] = unmap
        return c

    def _usable_mms(self) -> list[_Mm]:
        """The mms use_mm may name: with users, and (in a block) not claimed by another list."""
        if self.block is None:
            return self.live_mms
        return [mm for mm in self.live_mms if self.block.free_mm(mm)]

    def _weights(self, ops: Sequence[str]) -> list[int]:
        weights = []
        for op in ops:
            w = WEIGHTS[op]
            if op == "exit" and len(self.live_tasks) >= SOFT_LIVE_TASKS:
                w *= EXIT_BOOST
            weights.append(w)
        return weights

    # ---- one step ---------------------------------------------------------------------------

    def step(self) -> str:
        cands = self._candidates()
        ops = [op for op in OPS if op in cands and WEIGHTS[op] > 0]
        if not ops:  # cannot happen: run or idle, or (first step) a creation, is always legal
            raise RuntimeError("no legal step")
        op = self.rng.choices(ops, weights=self._weights(ops))[0]
        pick = self.rng.choice(cands[op])
        getattr(self, "_do_" + op)(pick)
        return op

    def _list_step(self) -> bool:
        """One step of the current block list (self.block.cpu) into self.scenario, with its
        claims; False (and nothing emitted) when no step is legal there."""
        blk = self.block
        leaving = self.curr[blk.cpu]
        if leaving is not None and not blk.free_task(leaving):
            return False  # cannot happen: another list named the task current here
        cands = self._candidates()
        ops = [op for op in OPS if op in cands and WEIGHTS[op] > 0]
        if not ops:
            return False
        op = self.rng.choices(ops, weights=self._weights(ops))[0]
        pick = self.rng.choice(cands[op])
        tasks, mms = [], []
        if leaving is not None:
            tasks.append(leaving)  # the task a switch leaves; its mm stays unclaimed
        if isinstance(pick, _Task):
            tasks.append(pick)
            mms.append(pick.mm)  # before the step (exec, exit and unuse_mm change it)
        getattr(self, "_do_" + op)(pick)
        step = self.scenario.steps[-1]
        for field in ("task", "parent"):
            if field in step:
                task = self.tasks_by_name[step[field]]
                tasks.append(task)
                mms.append(task.mm)  # after the step (spawn, fork, exec, use_mm set it)
        if "mm" in step:
            mms.append(self.mms_by_name[step["mm"]])
        blk.claim(tasks, mms)
        return True

    def _block(self, budget: int) -> int:
        """A parallel block of at most `budget` model steps; returns how many it emitted."""
        top = self.scenario
        n = self.rng.randint(2, min(self.cpus, BLOCK_MAX_CPUS))
        cpus = self.rng.sample(range(self.cpus), n)
        lengths = [self.rng.randint(1, LIST_MAX_STEPS) for _ in cpus]
        # All draws for the block's shape come first, so a block cut short by the budget is a
        # prefix of the whole one. The tool compiles the lists in key order, as strings.
        order = sorted(zip(cpus, lengths), key=lambda pair: str(pair[0]))
        blk = _Block([t.mm for t in self._current() if t.mm is not None])
        lists = []
        left = budget
        self.block = blk
        try:
            for cpu, length in order:
                if left == 0:
                    break
                blk.cpu = cpu
                self.scenario = Scenario(f"cpu{cpu}", cpus=self.cpus)
                for _ in range(min(length, left)):
                    if not self._list_step():
                        break
                    left -= 1
                if len(self.scenario):
                    lists.append((cpu, self.scenario))
        finally:
            self.scenario = top
            self.block = None
        if len(lists) >= 2:
            top.parallel(dict(lists))
        else:  # one list: the same steps, as plain steps
            for _, sub in lists:
                for step in sub.steps:
                    fields = {key: value for key, value in step.items() if key != "op"}
                    getattr(top, step["op"])(**fields)
        return budget - left

    def _pages(self, limit: int) -> int:
        return self.rng.randint(1, min(limit, MAP_MAX_PAGES))

    def _do_spawn(self, _: None) -> None:
        pages = self.rng.randint(1, SPAWN_MAX_PAGES)
        cpu = None
        if self.rng.random() < SPAWN_CPU_CHANCE:
            cpu = self.block.cpu if self.block is not None else self.rng.randrange(self.cpus)
        task = self._new_task("p", False, None)
        task.mm = self._new_mm(task.name, pages, pages)
        self.scenario.spawn(task.name, pages=pages, cpu=cpu)

    def _do_clone_vm(self, parent: _Task) -> None:
        parent.mm.users += 1
        task = self._new_task("t", False, parent.mm)
        self.scenario.clone_vm(parent.name, task.name)

    def _do_fork(self, parent: _Task) -> None:
        src = parent.mm  # dup_mm copies every entry, unmapped ones included
        task = self._new_task("f", False, None)
        task.mm = self._new_mm(task.name, src.entries, src.mapped)
        self.scenario.fork(parent.name, task.name)

    def _do_kthread(self, _: None) -> None:
        task = self._new_task("k", True, None)
        self.scenario.kthread(task.name)

    def _do_run(self, task: _Task) -> None:
        if self.block is not None:
            cpu = self.block.cpu
        else:
            cpu = self.rng.randrange(self.cpus)  # the task runs nowhere, so not here either
        self._switch(cpu, task)
        self.scenario.run(cpu, task.name)

    def _do_idle(self, cpu: int) -> None:
        self._switch(cpu, None)
        self.scenario.idle(cpu)

    def _do_exec(self, task: _Task) -> None:
        pages = self.rng.randint(1, SPAWN_MAX_PAGES)
        task.execs += 1
        new = self._new_mm(f"{task.name}.exec{task.execs}", pages, pages)
        if task.mm is not None:
            self._drop_user(task.mm)
        task.mm = new
        task.kthread = False  # a kernel thread that execs becomes a user task
        self.scenario.exec(task.name, pages=pages)

    def _do_exit(self, task: _Task) -> None:
        if task.mm is not None:
            self._drop_user(task.mm)
        task.mm = None
        task.alive = False
        self.live_tasks.remove(task)
        self._switch(task.cpu, None)
        self.scenario.exit(task.name)

    def _do_use_mm(self, task: _Task) -> None:
        mm = self.rng.choice(self._usable_mms())
        task.using_mm = True
        task.mm = mm
        self.scenario.use_mm(task.name, mm.name)

    def _do_unuse_mm(self, task: _Task) -> None:
        task.using_mm = False
        task.mm = None
        self.scenario.unuse_mm(task.name)

    def _do_mmap(self, task: _Task) -> None:
        pages = self._pages(MAX_PAGE_ENTRIES - task.mm.entries)
        task.mm.entries += pages
        task.mm.mapped += pages
        self.scenario.mmap(task.name, pages=pages)

    def _do_munmap(self, task: _Task) -> None:
        pages = self._pages(task.mm.mapped)
        task.mm.mapped -= pages
        self.scenario.munmap(task.name, pages=pages)

    def _do_mprotect(self, task: _Task) -> None:
        pages = self._pages(task.mm.mapped)
        prot = self.rng.choice(("r", "rw"))
        self.scenario.mprotect(task.name, pages=pages, prot=prot)

    # ---- a whole scenario -------------------------------------------------------------------

    def generate(self, steps: int) -> Scenario:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        self.scenario = Scenario(f"stress-cpus{self.cpus}-seed{self.seed}-steps{steps}",
                                 cpus=self.cpus, lazy_tlb=self.lazy_tlb)
        done = 0
        while done < steps:
            # No draw without blocks: --parallel 0 keeps the single-step generator's output.
            if self.cpus >= 2 and self.parallel > 0 and self.rng.random() < self.parallel:
                emitted = self._block(steps - done)
                if emitted:
                    done += emitted
                    continue
            self.step()
            done += 1
        self.scenario.checkpoint()
        return self.scenario


def generate(cpus: int, seed: int, steps: int, lazy_tlb: bool = True,
             parallel: float = PARALLEL) -> Scenario:
    """The scenario for (cpus, seed, steps, parallel), as an activemm_scenario.Scenario."""
    return Generator(cpus, seed, lazy_tlb, parallel).generate(steps)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print a seeded random activemm scenario (JSON) on stdout.")
    parser.add_argument("--cpus", type=int, required=True, help=f"1..{MAX_CPUS}")
    parser.add_argument("--seed", type=int, required=True, help="random.Random seed")
    parser.add_argument("--steps", type=int, required=True,
                        help="model steps (>= 1), followed by one checkpoint")
    parser.add_argument("--parallel", type=_probability, default=PARALLEL, metavar="P",
                        help="the chance (0..1) of a parallel block instead of a single step "
                             f"(default {PARALLEL}; needs 2 CPUs)")
    parser.add_argument("--lazy-tlb", choices=("on", "off"), default="on",
                        help="the file's lazy_tlb (default on); does not change the steps")
    args = parser.parse_args(argv)
    if not 1 <= args.cpus <= MAX_CPUS:
        parser.error(f"--cpus must be between 1 and {MAX_CPUS}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    scenario = generate(args.cpus, args.seed, args.steps, lazy_tlb=args.lazy_tlb == "on",
                        parallel=args.parallel)
    sys.stdout.write(scenario.to_json())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
