"""Write activemm scenarios in Python.

A scenario is a JSON file (docs/scenarios.md); this module builds one step by step, with one
method per op and the file's field names as argument names:

    from activemm_scenario import Scenario, main

    def build():
        s = Scenario("two threads", cpus=2)
        s.spawn("A", pages=4).clone_vm("A", "A1")
        s.run(0, "A").run(1, "A1")
        s.check("A", mm_users=2, mm_count=1, loaded_on=[0, 1], lazy_on=[])
        s.counters(cpu=0, lazy_tlb=True, cr3_writes=1, lazy_drops=1)
        return s

    if __name__ == "__main__":
        main(build())

Running such a file prints the scenario's JSON on stdout (`activemm run X.py` runs it with
/usr/bin/python3 and reads that); `python3 X.py OUT.json` writes it to OUT.json instead.

Concurrent steps go in a parallel block, one list of model steps per CPU, built with a Scenario
each (or given as lists of step dicts):

        s.parallel({0: Scenario("cpu 0", cpus=2).munmap("A", pages=2),
                    1: Scenario("cpu 1", cpus=2).run(1, "K").idle(1)})

Optional fields are left out of the JSON when their argument is None, so the tool's defaults
apply. Validation here is light (types, ranges, counter names, CPUs in range) and raises
ValueError naming the step; the tool itself checks what only a replay can tell (a task that
is not running, an mm without users, ...). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Iterable, Mapping, Sequence

VERSION = 1
MAX_CPUS = 64
MAX_SPAWN_PAGES = 32  # spawn and exec: the new mm's data pages
MAX_PAGE_ENTRIES = 64  # an mm's page entries, mapped and unmapped
PROTS = ("r", "rw")

# The event counters in shared/mm_abi.h (MmCounters), in field order.
COUNTER_NAMES = (
    "context_switches",
    "switch_user_to_kernel",
    "switch_kernel_to_kernel",
    "switch_kernel_to_user",
    "switch_user_to_user",
    "cr3_writes",
    "cr3_writes_flush",
    "cr3_writes_noflush",
    "invlpg",
    "lazy_entries",
    "lazy_grabs",
    "lazy_drops",
    "ipis_sent",
    "ipis_received",
    "shootdowns",
    "full_flushes",
    "leave_mm",
    "user_bursts",
)

INIT_MM = "init_mm"

# The ops that change the model: the only ones a parallel block's lists may hold.
MODEL_OPS = ("spawn", "clone_vm", "fork", "kthread", "run", "idle", "exec", "exit", "use_mm",
             "unuse_mm", "mmap", "munmap", "mprotect")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _int(value: Any, what: str, low: int, high: int | None = None) -> int:
    if not _is_int(value) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{what} must be an integer {bounds}, got {value!r}")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


LAZY_MODES = ("on", "shootdown", "off")
PCID_MODES = ("hardware", "modeled", "off")


def _mode_filter(value: Any, what: str, modes: Sequence[str]) -> bool | str | list[str]:
    """A check's mode filter: True, False, one mode name, or a list of them (docs/scenarios.md).

    Returns the value as the JSON carries it.
    """
    if isinstance(value, bool):
        return value
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{what} must be True, False, one of {', '.join(modes)} or a "
                         f"non-empty list of them, got {value!r}")
    for name in names:
        if name not in modes:
            raise ValueError(f"{what}: unknown mode {name!r} (modes: {', '.join(modes)})")
    return value if isinstance(value, str) else list(names)


def _lazy_modes(value: bool | str | Iterable[str] | None) -> set[str]:
    """The lazy modes a filter value names (None: all of them)."""
    if value is None:
        return set(LAZY_MODES)
    if isinstance(value, bool):
        return {"on"} if value else {"off"}
    return {value} if isinstance(value, str) else set(value)


def _copy_step(step: dict[str, Any]) -> dict[str, Any]:
    copy = dict(step)
    if step.get("op") == "parallel":
        copy["steps"] = {cpu: [dict(inner) for inner in steps]
                         for cpu, steps in step["steps"].items()}
    return copy


class Scenario:
    """A scenario under construction. Every op method appends one step and returns self."""

    def __init__(self, name: str, cpus: int, lazy_tlb: bool = True) -> None:
        self.name = _name(name, "name")
        self.cpus = _int(cpus, "cpus", 1, MAX_CPUS)
        self.lazy_tlb = _bool(lazy_tlb, "lazy_tlb")
        self._steps: list[dict[str, Any]] = []

    # ---- plumbing ---------------------------------------------------------------------------

    @property
    def steps(self) -> list[dict[str, Any]]:
        """A copy of the steps so far (dicts in file order)."""
        return [_copy_step(step) for step in self._steps]

    def __len__(self) -> int:
        return len(self._steps)

    def _where(self, op: str) -> str:
        return f"step {len(self._steps)} ({op})"

    def _cpu(self, value: Any, what: str) -> int:
        if not _is_int(value) or not 0 <= value < self.cpus:
            raise ValueError(
                f"{what} must be a CPU number between 0 and {self.cpus - 1} "
                f"(the scenario has {self.cpus} CPUs), got {value!r}")
        return value

    def _cpu_list(self, values: Any, what: str) -> list[int]:
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"{what} must be a list of CPU numbers, got {values!r}")
        cpus = [self._cpu(v, f"{what} entry") for v in values]
        if len(set(cpus)) != len(cpus):
            raise ValueError(f"{what} lists a CPU twice: {cpus!r}")
        return sorted(cpus)

    def _add(self, op: str, **fields: Any) -> Scenario:
        step: dict[str, Any] = {"op": op}
        step.update((key, value) for key, value in fields.items() if value is not None)
        self._steps.append(step)
        return self

    # ---- tasks and mms ----------------------------------------------------------------------

    def spawn(self, task: str, pages: int | None = None, cpu: int | None = None) -> Scenario:
        """A new process `task` with a new mm named `task` (pages: 1..32, tool default 4)."""
        where = self._where("spawn")
        _name(task, f"{where}: task")
        if pages is not None:
            _int(pages, f"{where}: pages", 1, MAX_SPAWN_PAGES)
        if cpu is not None:
            self._cpu(cpu, f"{where}: cpu")
        return self._add("spawn", task=task, pages=pages, cpu=cpu)

    def clone_vm(self, parent: str, task: str) -> Scenario:
        """A new thread `task` sharing `parent`'s mm (mmget)."""
        where = self._where("clone_vm")
        _name(parent, f"{where}: parent")
        _name(task, f"{where}: task")
        return self._add("clone_vm", parent=parent, task=task)

    def fork(self, parent: str, task: str) -> Scenario:
        """A new process `task` with a copy of `parent`'s mm, named `task` (dup_mm)."""
        where = self._where("fork")
        _name(parent, f"{where}: parent")
        _name(task, f"{where}: task")
        return self._add("fork", parent=parent, task=task)

    def kthread(self, task: str) -> Scenario:
        """A new kernel thread (mm = NULL)."""
        _name(task, f"{self._where('kthread')}: task")
        return self._add("kthread", task=task)

    # ---- scheduling -------------------------------------------------------------------------

    def run(self, cpu: int, task: str) -> Scenario:
        """CPU `cpu` context-switches to `task`."""
        where = self._where("run")
        self._cpu(cpu, f"{where}: cpu")
        _name(task, f"{where}: task")
        return self._add("run", cpu=cpu, task=task)

    def idle(self, cpu: int) -> Scenario:
        """CPU `cpu` switches to its idle task."""
        self._cpu(cpu, f"{self._where('idle')}: cpu")
        return self._add("idle", cpu=cpu)

    def exec(self, task: str, pages: int | None = None) -> Scenario:
        """The running `task` execs: a new mm "<task>.execN" (pages: 1..32, tool default 4)."""
        where = self._where("exec")
        _name(task, f"{where}: task")
        if pages is not None:
            _int(pages, f"{where}: pages", 1, MAX_SPAWN_PAGES)
        return self._add("exec", task=task, pages=pages)

    def exit(self, task: str) -> Scenario:
        """The running `task` exits; its CPU switches to its idle task."""
        _name(task, f"{self._where('exit')}: task")
        return self._add("exit", task=task)

    def use_mm(self, task: str, mm: str) -> Scenario:
        """The running kernel thread `task` calls kthread_use_mm(mm)."""
        where = self._where("use_mm")
        _name(task, f"{where}: task")
        _name(mm, f"{where}: mm")
        return self._add("use_mm", task=task, mm=mm)

    def unuse_mm(self, task: str) -> Scenario:
        """The running kernel thread `task` calls kthread_unuse_mm()."""
        _name(task, f"{self._where('unuse_mm')}: task")
        return self._add("unuse_mm", task=task)

    # ---- mappings (by the running task, on current->mm) -------------------------------------

    def _page_op(self, op: str, task: str, pages: int | None, **extra: Any) -> Scenario:
        where = self._where(op)
        _name(task, f"{where}: task")
        if pages is not None:
            _int(pages, f"{where}: pages", 1, MAX_PAGE_ENTRIES)
        return self._add(op, task=task, pages=pages, **extra)

    def mmap(self, task: str, pages: int | None = None) -> Scenario:
        """Maps `pages` new pages (tool default 1) after the mm's others."""
        return self._page_op("mmap", task, pages)

    def munmap(self, task: str, pages: int | None = None) -> Scenario:
        """Unmaps the last `pages` mapped pages (tool default 1)."""
        return self._page_op("munmap", task, pages)

    def mprotect(self, task: str, pages: int | None = None, prot: str | None = None) -> Scenario:
        """Sets the last `pages` mapped pages (tool default 1) to prot "r" (default) or "rw"."""
        if prot is not None and prot not in PROTS:
            raise ValueError(f"{self._where('mprotect')}: prot must be \"r\" or \"rw\", "
                             f"got {prot!r}")
        return self._page_op("mprotect", task, pages, prot=prot)

    # ---- concurrency ------------------------------------------------------------------------

    # Mapping in the hint, as a dict's value type is invariant; a non-dict is still rejected.
    def parallel(self,
                 steps_by_cpu: Mapping[int, Scenario | Iterable[dict[str, Any]]]) -> Scenario:
        """A parallel block: {cpu: steps}, each CPU's list of model steps runs on that CPU,
        concurrently with the other lists (docs/scenarios.md, "Concurrency").

        A list is a Scenario (its steps are taken) or a list of step dicts. The lists are
        written in the dict's order, keyed by the CPU number as a string. Checked here: the
        CPUs, model ops only (no check, counters, checkpoint or nested parallel), and a "cpu"
        field naming the list's CPU. The tool checks the rest: every step runs on its list's
        CPU and no task or user mm is used by two lists.
        """
        where = self._where("parallel")
        if not isinstance(steps_by_cpu, dict) or not steps_by_cpu:
            raise ValueError(f"{where}: steps must be a non-empty dict of CPU -> list of steps, "
                             f"got {steps_by_cpu!r}")
        lists = {}
        for cpu, steps in steps_by_cpu.items():
            self._cpu(cpu, f"{where}: list key")
            if isinstance(steps, Scenario):
                steps = steps.steps
            if isinstance(steps, (str, bytes, dict)) or not hasattr(steps, "__iter__"):
                raise ValueError(f"{where}: the list of CPU {cpu} must be a list of steps "
                                 f"or a Scenario, got {steps!r}")
            out = []
            for k, step in enumerate(steps):
                what = f"{where}: CPU {cpu}'s step {k}"
                if not isinstance(step, dict) or not isinstance(step.get("op"), str):
                    raise ValueError(f"{what} must be a step dict with an op, got {step!r}")
                if step["op"] not in MODEL_OPS:
                    raise ValueError(f"{what} ({step['op']}): only model steps may run in "
                                     "parallel; checks go after the block")
                if "cpu" in step and step["cpu"] != cpu:
                    raise ValueError(f"{what} ({step['op']}): names CPU {step['cpu']!r}, "
                                     f"but its list runs on CPU {cpu}")
                out.append(dict(step))
            lists[str(cpu)] = out
        return self._add("parallel", steps=lists)

    # ---- expectations -----------------------------------------------------------------------

    def check(self, mm: str | None = None, *, task: str | None = None,
              mm_users: int | None = None, mm_count: int | None = None,
              freed: bool | None = None, loaded_on: Iterable[int] | None = None,
              lazy_on: Iterable[int] | None = None,
              lazy_tlb: bool | str | Sequence[str] | None = None,
              pcid: bool | str | Sequence[str] | None = None) -> Scenario:
        """Expectations on mm `mm`, or (task=...) on the mm that task has as active_mm.

        loaded_on: the CPUs whose cpu_tlbstate.loaded_mm is the mm; lazy_on: those of them in
        lazy TLB mode; freed: mm_count has reached 0. lazy_tlb and pcid filter the runs the
        check applies to: lazy_tlb=True (on), False (off), "on", "shootdown", "off" or a list;
        pcid=True (real or modeled PCIDs), False (off), "hardware", "modeled", "off" or a list.
        Without a filter the check applies in every mode.
        """
        where = self._where("check")
        if (mm is None) == (task is None):
            raise ValueError(f"{where}: give exactly one of mm and task")
        if mm is not None:
            _name(mm, f"{where}: mm")
        else:
            _name(task, f"{where}: task")
        if mm_users is not None:
            _int(mm_users, f"{where}: mm_users", 0)
        if mm_count is not None:
            _int(mm_count, f"{where}: mm_count", 0)
        if freed is not None:
            _bool(freed, f"{where}: freed")
        if mm == INIT_MM and (mm_users is not None or mm_count is not None or freed is not None):
            raise ValueError(f"{where}: init_mm's reference counts are not modeled; "
                             "check only loaded_on and lazy_on")
        if loaded_on is not None:
            loaded_on = self._cpu_list(loaded_on, f"{where}: loaded_on")
        if lazy_on is not None:
            lazy_on = self._cpu_list(lazy_on, f"{where}: lazy_on")
        if lazy_tlb is not None:
            lazy_tlb = _mode_filter(lazy_tlb, f"{where}: lazy_tlb", LAZY_MODES)
        if pcid is not None:
            pcid = _mode_filter(pcid, f"{where}: pcid", PCID_MODES)
        if loaded_on is not None and lazy_on is not None and not set(lazy_on) <= set(loaded_on):
            raise ValueError(f"{where}: lazy_on {lazy_on} must be a subset of loaded_on "
                             f"{loaded_on} (a lazy CPU has the mm loaded)")
        if _lazy_modes(lazy_tlb) == {"off"} and lazy_on:
            raise ValueError(f"{where}: lazy_on {lazy_on} with lazy_tlb off: "
                             "without lazy TLB no CPU is ever lazy")
        return self._add("check", mm=mm, task=task, mm_users=mm_users, mm_count=mm_count,
                         freed=freed, loaded_on=loaded_on, lazy_on=lazy_on, lazy_tlb=lazy_tlb,
                         pcid=pcid)

    def counters(self, cpu: int | None = None,
                 lazy_tlb: bool | str | Sequence[str] | None = None,
                 pcid: bool | str | Sequence[str] | None = None, **expected: int) -> Scenario:
        """Expected event counters since the first step: CPU `cpu`'s, or the totals over all CPUs.

        lazy_tlb and pcid filter the runs it applies to, as for check().

        Counters are keyword arguments named as in COUNTER_NAMES (a dict can be passed with
        **). They are written in COUNTER_NAMES order.
        """
        where = self._where("counters")
        if cpu is not None:
            self._cpu(cpu, f"{where}: cpu")
        if lazy_tlb is not None:
            lazy_tlb = _mode_filter(lazy_tlb, f"{where}: lazy_tlb", LAZY_MODES)
        if pcid is not None:
            pcid = _mode_filter(pcid, f"{where}: pcid", PCID_MODES)
        unknown = sorted(set(expected) - set(COUNTER_NAMES))
        if unknown:
            raise ValueError(f"{where}: unknown counter {unknown[0]!r} "
                             f"(counters: {', '.join(COUNTER_NAMES)})")
        if not expected:
            raise ValueError(f"{where}: no counters given")
        for name, value in expected.items():
            _int(value, f"{where}: counter {name}", 0)
        ordered = {name: expected[name] for name in COUNTER_NAMES if name in expected}
        return self._add("counters", cpu=cpu, lazy_tlb=lazy_tlb, pcid=pcid, **ordered)

    def checkpoint(self) -> Scenario:
        """A full verification pass at this point (invariants, real CR3s, page tables)."""
        return self._add("checkpoint")

    # ---- output -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        if not self._steps:
            raise ValueError(f"scenario {self.name!r} has no steps")
        return {
            "version": VERSION,
            "name": self.name,
            "cpus": self.cpus,
            "lazy_tlb": self.lazy_tlb,
            "steps": self.steps,
        }

    def to_json(self) -> str:
        """The scenario file's text: one field per line, one step per line, keys in a fixed
        order (as the methods add them), ending with a newline."""
        doc = self.to_dict()
        lines = ["{"]
        for key in ("version", "name", "cpus", "lazy_tlb"):
            lines.append(f"  {json.dumps(key)}: {json.dumps(doc[key])},")
        lines.append('  "steps": [')
        steps = [f"    {json.dumps(step)}" for step in doc["steps"]]
        lines.append(",\n".join(steps))
        lines.append("  ]")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike[str]) -> str:
        """Writes the JSON to `path` atomically (a temporary file beside it, then os.replace)."""
        text = self.to_json()
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return path


def main(scenario: Scenario, argv: Iterable[str] | None = None) -> int:
    """Prints `scenario`'s JSON on stdout, or with one argument writes it to that file.

    For the end of a scenario script: `if __name__ == "__main__": main(build())`.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "scenario"
    if args and args[0] in ("-h", "--help"):
        print(f"usage: {prog} [OUT.json]\n"
              "Prints the scenario as JSON on stdout, or writes it to OUT.json.")
        return 0
    if len(args) > 1:
        print(f"usage: {prog} [OUT.json]", file=sys.stderr)
        sys.exit(2)
    try:
        if args:
            scenario.write(args[0])
        else:
            sys.stdout.write(scenario.to_json())
            sys.stdout.flush()
    except (ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(2)
    return 0
