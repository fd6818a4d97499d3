#!/usr/bin/python3
"""A seeded random scenario generator for stress runs (docs/scenarios.md's format).

    /usr/bin/python3 scripts/stress_gen.py --cpus N --seed S --steps K [--lazy-tlb on|off]

prints one scenario (version 1, name "stress-cpusN-seedS-stepsK", N CPUs) on stdout: exactly K
model steps, then one {"op": "checkpoint"}. It carries no check or counters steps; run it with
`activemm run FILE --verify=every-step` so the host verifies the invariants after every step.

The output depends only on (cpus, seed, steps) (--lazy-tlb only sets the file's "lazy_tlb"), and
the steps of a K-step scenario are a prefix of a longer one's: one random.Random(seed) drives every
choice, candidates are always taken from lists in creation or CPU order (never from a set or a
dict's iteration order), and no limit depends on K.

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
steps per file: its program area holds 26213, the final verification included.)
"""

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from activemm_scenario import MAX_CPUS, MAX_PAGE_ENTRIES, Scenario  # noqa: E402

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

OPS = tuple(WEIGHTS)  # a fixed order for the weighted choice


class _Task:
    __slots__ = ("name", "kthread", "mm", "using_mm", "cpu", "execs", "alive")

    def __init__(self, name, kthread, mm):
        self.name = name
        self.kthread = kthread  # created by kthread and has not exec'd
        self.mm = mm            # the _Mm it owns (a kthread: the one it uses), or None
        self.using_mm = False   # a kthread between use_mm and unuse_mm
        self.cpu = -1           # the CPU it is current on, or -1
        self.execs = 0
        self.alive = True


class _Mm:
    __slots__ = ("name", "users", "entries", "mapped")

    def __init__(self, name, entries, mapped):
        self.name = name
        self.users = 1
        self.entries = entries  # page entries, mapped and unmapped (<= MAX_PAGE_ENTRIES)
        self.mapped = mapped


class Generator:
    """Replays the validator's state and emits random legal steps into a Scenario."""

    def __init__(self, cpus, seed, lazy_tlb=True):
        if not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus must be 1..{MAX_CPUS}, got {cpus!r}")
        self.cpus = cpus
        self.seed = seed
        self.lazy_tlb = lazy_tlb
        self.rng = random.Random(seed)
        self.curr = [None] * cpus   # per CPU: the current _Task, None for the idle task
        self.live_tasks = []        # in creation order
        self.live_mms = []          # mms with users, in creation order
        self.tasks_created = 0
        self.mms_created = 0
        self.scenario = None

    # ---- state helpers ------------------------------------------------------------------

    def _new_task(self, prefix, kthread, mm):
        self.tasks_created += 1
        task = _Task(f"{prefix}{self.tasks_created}", kthread, mm)
        self.live_tasks.append(task)
        return task

    def _new_mm(self, name, entries, mapped):
        self.mms_created += 1
        mm = _Mm(name, entries, mapped)
        self.live_mms.append(mm)
        return mm

    def _drop_user(self, mm):
        mm.users -= 1
        if mm.users == 0:  # mmput of the last user: exit_mmap frees every entry
            mm.entries = mm.mapped = 0
            self.live_mms.remove(mm)

    def _switch(self, cpu, task):
        old = self.curr[cpu]
        if old is not None:
            old.cpu = -1
        if task is not None:
            task.cpu = cpu
        self.curr[cpu] = task

    def _current(self):
        return [t for t in self.curr if t is not None]  # in CPU order

    def _can_create_task(self):
        return self.tasks_created < TASK_BUDGET and len(self.live_tasks) < MAX_LIVE_TASKS

    def _can_create_mm(self):
        return self.mms_created < MM_BUDGET and len(self.live_mms) < MAX_LIVE_MMS

    def _acts_on_mm(self, task):
        # A task acting on current->mm: a user task, or a kthread in use_mm whose mm still has
        # users (exit_mmap has torn the pages down otherwise).
        return task.mm is not None and task.mm.users > 0

    def _shootdown_free(self, task):
        if not SHOOTDOWN_SAFE:
            return True
        return all(other is task or other.mm is not task.mm for other in self._current())

    # ---- candidates per op ------------------------------------------------------------------

    def _candidates(self):
        """{op: [candidates]} for every op that has a legal step now."""
        current = self._current()
        user_parents = [t for t in self.live_tasks if t.mm is not None and not t.using_mm]
        c = {}
        if self._can_create_task():
            if self._can_create_mm():
                c["spawn"] = [None]
                if user_parents:
                    c["fork"] = user_parents
            if user_parents:
                c["clone_vm"] = user_parents
            c["kthread"] = [None]
        runnable = [t for t in self.live_tasks if t.cpu < 0]
        if runnable:
            c["run"] = runnable
        busy = [cpu for cpu in range(self.cpus) if self.curr[cpu] is not None]
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
        if self.live_mms:
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

    def _weights(self, ops):
        weights = []
        for op in ops:
            w = WEIGHTS[op]
            if op == "exit" and len(self.live_tasks) >= SOFT_LIVE_TASKS:
                w *= EXIT_BOOST
            weights.append(w)
        return weights

    # ---- one step ---------------------------------------------------------------------------

    def step(self):
        cands = self._candidates()
        ops = [op for op in OPS if op in cands and WEIGHTS[op] > 0]
        if not ops:  # cannot happen: run or idle, or (first step) a creation, is always legal
            raise RuntimeError("no legal step")
        op = self.rng.choices(ops, weights=self._weights(ops))[0]
        pick = self.rng.choice(cands[op])
        getattr(self, "_do_" + op)(pick)
        return op

    def _pages(self, limit):
        return self.rng.randint(1, min(limit, MAP_MAX_PAGES))

    def _do_spawn(self, _):
        pages = self.rng.randint(1, SPAWN_MAX_PAGES)
        cpu = None
        if self.rng.random() < SPAWN_CPU_CHANCE:
            cpu = self.rng.randrange(self.cpus)
        task = self._new_task("p", False, None)
        task.mm = self._new_mm(task.name, pages, pages)
        self.scenario.spawn(task.name, pages=pages, cpu=cpu)

    def _do_clone_vm(self, parent):
        parent.mm.users += 1
        task = self._new_task("t", False, parent.mm)
        self.scenario.clone_vm(parent.name, task.name)

    def _do_fork(self, parent):
        src = parent.mm  # dup_mm copies every entry, unmapped ones included
        task = self._new_task("f", False, None)
        task.mm = self._new_mm(task.name, src.entries, src.mapped)
        self.scenario.fork(parent.name, task.name)

    def _do_kthread(self, _):
        task = self._new_task("k", True, None)
        self.scenario.kthread(task.name)

    def _do_run(self, task):
        cpu = self.rng.randrange(self.cpus)  # the task runs nowhere, so not here either
        self._switch(cpu, task)
        self.scenario.run(cpu, task.name)

    def _do_idle(self, cpu):
        self._switch(cpu, None)
        self.scenario.idle(cpu)

    def _do_exec(self, task):
        pages = self.rng.randint(1, SPAWN_MAX_PAGES)
        task.execs += 1
        new = self._new_mm(f"{task.name}.exec{task.execs}", pages, pages)
        if task.mm is not None:
            self._drop_user(task.mm)
        task.mm = new
        task.kthread = False  # a kernel thread that execs becomes a user task
        self.scenario.exec(task.name, pages=pages)

    def _do_exit(self, task):
        if task.mm is not None:
            self._drop_user(task.mm)
        task.mm = None
        task.alive = False
        self.live_tasks.remove(task)
        self._switch(task.cpu, None)
        self.scenario.exit(task.name)

    def _do_use_mm(self, task):
        mm = self.rng.choice(self.live_mms)
        task.using_mm = True
        task.mm = mm
        self.scenario.use_mm(task.name, mm.name)

    def _do_unuse_mm(self, task):
        task.using_mm = False
        task.mm = None
        self.scenario.unuse_mm(task.name)

    def _do_mmap(self, task):
        pages = self._pages(MAX_PAGE_ENTRIES - task.mm.entries)
        task.mm.entries += pages
        task.mm.mapped += pages
        self.scenario.mmap(task.name, pages=pages)

    def _do_munmap(self, task):
        pages = self._pages(task.mm.mapped)
        task.mm.mapped -= pages
        self.scenario.munmap(task.name, pages=pages)

    def _do_mprotect(self, task):
        pages = self._pages(task.mm.mapped)
        prot = self.rng.choice(("r", "rw"))
        self.scenario.mprotect(task.name, pages=pages, prot=prot)

    # ---- a whole scenario -------------------------------------------------------------------

    def generate(self, steps):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        self.scenario = Scenario(f"stress-cpus{self.cpus}-seed{self.seed}-steps{steps}",
                                 cpus=self.cpus, lazy_tlb=self.lazy_tlb)
        for _ in range(steps):
            self.step()
        self.scenario.checkpoint()
        return self.scenario


def generate(cpus, seed, steps, lazy_tlb=True):
    """The scenario for (cpus, seed, steps), as an activemm_scenario.Scenario."""
    return Generator(cpus, seed, lazy_tlb).generate(steps)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Print a seeded random activemm scenario (JSON) on stdout.")
    parser.add_argument("--cpus", type=int, required=True, help=f"1..{MAX_CPUS}")
    parser.add_argument("--seed", type=int, required=True, help="random.Random seed")
    parser.add_argument("--steps", type=int, required=True,
                        help="model steps (>= 1), followed by one checkpoint")
    parser.add_argument("--lazy-tlb", choices=("on", "off"), default="on",
                        help="the file's lazy_tlb (default on); does not change the steps")
    args = parser.parse_args(argv)
    if not 1 <= args.cpus <= MAX_CPUS:
        parser.error(f"--cpus must be between 1 and {MAX_CPUS}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    scenario = generate(args.cpus, args.seed, args.steps, lazy_tlb=args.lazy_tlb == "on")
    sys.stdout.write(scenario.to_json())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
