#!/usr/bin/python3
"""Parameter sweeps over generated scenarios: a CSV of counters and three PNG plots.

    /usr/bin/python3 scripts/sweep.py [--out DIR] [--quick] [--seed S] [--family NAME ...]
                                      [--activemm PATH] [--keep-scenarios DIR]
    /usr/bin/python3 scripts/sweep.py --plot-only [CSV] [--out DIR] [--family NAME ...]

Three families of scenarios (scripts/sweep_gen.py, docs/sweep.md), each point one scenario
generated from the seed, each run by `activemm run SCENARIO.json --json REPORT
--lazy-tlb=on|off --pcid=modeled|off`:

  kthread-share      4 CPUs, 0..90 % of the switches to kernel threads (step 10), lazy TLB on
                     and off: the CR3 writes, and the share lazy TLB saves -> kthread_share.png
  processes-per-cpu  4 CPUs, 1..8 processes per CPU, lazy on/off x PCID modeled/off: CR3 loads
                     per time slice, those that keep the TLB and those that flush it (a panel
                     per mode)                                      -> processes_per_cpu.png
  ipis-vs-cpus       1..16 CPUs running threads of one process, with munmaps and forks, lazy
                     on/off: flush IPIs, IPIs per shootdown, CR3 writes, leave_mm
                                                                    -> ipis_vs_cpus.png

Every plot panel has one unit, a legend and a title; a note below a panel says what is not
visible in it, found from the data: two series that coincide (coincidence()), a series that is
0 at every point.

Output in DIR (default docs/sweep/): sweep.csv (one row per scenario and mode: the family, the
swept parameter and value, the modes, and every total counter of the report) and the plots of
the families that ran. Every file is written to a temporary file beside it and renamed into
place at the end, so a file is there whole or not at all; a failed run writes nothing.

The binary: --activemm PATH, else $ACTIVEMM_BIN, else build/vmm/activemm. A run that exits
with a non-zero status stops the sweep with a message naming the scenario, the mode and the
exit status (exit status 1). On a terminal (and without $CI) a progress line is updated in
place on stderr; otherwise only errors and the final summary line are printed.
--quick runs a few points per family with small scenarios (for tests). --plot-only [CSV]
runs nothing: it redraws the plots from CSV (default DIR/sweep.csv) into DIR (default: the
CSV's directory), e.g. /usr/bin/python3 scripts/sweep.py --plot-only docs/sweep/sweep.csv.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
# matplotlib is optional (import_pyplot()): pyplot is typed ModuleType, its figures and axes Any.
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Sequence

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(SCRIPTS)
from activemm import sweep_gen
from activemm.scenario import COUNTER_NAMES

DEFAULT_OUT = os.path.join(ROOT, "docs", "sweep")
DEFAULT_BIN = os.path.join(ROOT, "build", "vmm", "activemm")
RUN_TIMEOUT = 600  # seconds for one activemm run (its own watchdog stops a stuck guest first)

CSV_NAME = "sweep.csv"
BASE_COLUMNS = ("family", "parameter", "value", "seed", "scenario", "cpus", "steps", "lazy",
                "pcid", "asids")

# activemm's exit statuses (vmm/cli/exit_codes.h, docs/report.md).
EXIT_MEANING = {
    1: "a check failed or the verifier found a violation",
    2: "bad command line or invalid scenario",
    3: "guest failure",
    4: "the watchdog stopped the run",
    5: "no usable KVM",
    6: "host error",
}

Family = collections.namedtuple("Family", "name parameter points quick_points modes plot")

# (lazy, pcid) pairs run on every scenario of a family.
LAZY_ON_OFF = (("on", "modeled"), ("off", "modeled"))
LAZY_X_PCID = (("on", "modeled"), ("off", "modeled"), ("on", "off"), ("off", "off"))

FAMILIES = collections.OrderedDict((f.name, f) for f in (
    Family(sweep_gen.KTHREAD_SHARE, "kthread_share_pct", tuple(range(0, 91, 10)), (0, 50, 90),
           LAZY_ON_OFF, "kthread_share.png"),
    Family(sweep_gen.PROCESSES_PER_CPU, "processes_per_cpu", tuple(range(1, 9)), (2, 6, 7),
           LAZY_X_PCID, "processes_per_cpu.png"),
    Family(sweep_gen.IPIS_VS_CPUS, "cpus", tuple(range(1, 17)), (1, 2, 4),
           LAZY_ON_OFF, "ipis_vs_cpus.png"),
))


class SweepError(Exception):
    pass


def describe_point(family: str, value: int) -> str:
    if family == sweep_gen.KTHREAD_SHARE:
        return f"{family} {value}%"
    if family == sweep_gen.PROCESSES_PER_CPU:
        return f"{family} {value}"
    return f"{family} {value} cpu{'s' if value != 1 else ''}"


# ---- progress ---------------------------------------------------------------------------------

class Progress:
    """One line on stderr, rewritten in place; only on a terminal outside CI."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def progress_wanted() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


# ---- running --------------------------------------------------------------------------------

def find_binary(path: str | None) -> str:
    binary = path or os.environ.get("ACTIVEMM_BIN") or DEFAULT_BIN
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise SweepError(f"the activemm binary {binary} does not exist or is not executable "
                         "(build it with `cmake --build build`, or give --activemm PATH or "
                         "$ACTIVEMM_BIN)")
    return binary


def run_one(binary: str, scenario_path: str, report_path: str, lazy: str, pcid: str,
            what: str) -> dict[str, Any]:
    cmd = [binary, "run", scenario_path, "--json", report_path, f"--lazy-tlb={lazy}",
           f"--pcid={pcid}"]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SweepError(f"activemm run of scenario {what} (lazy={lazy}, pcid={pcid}) did not "
                         f"finish in {RUN_TIMEOUT} s") from None
    except OSError as e:
        raise SweepError(f"cannot run {binary} for scenario {what} (lazy={lazy}, pcid={pcid}): "
                         f"{e}") from None
    if out.returncode != 0:
        meaning = EXIT_MEANING.get(out.returncode, "")
        status = (f"exit status {out.returncode}" if out.returncode > 0
                  else f"killed by signal {-out.returncode}")
        tail = "\n".join((out.stderr.strip() or out.stdout.strip()).splitlines()[-12:])
        msg = (f"activemm run failed on scenario {what} (lazy={lazy}, pcid={pcid}): {status}"
               + (f" ({meaning})" if meaning else "")
               + f"\n  command: {' '.join(cmd)}")
        if tail:
            msg += "\n  " + tail.replace("\n", "\n  ")
        raise SweepError(msg)
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        totals = report["totals"]
        if not isinstance(report["mode"], dict):
            raise ValueError("mode is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SweepError(f"scenario {what} (lazy={lazy}, pcid={pcid}): unreadable report "
                         f"{report_path}: {e}") from None
    missing = [name for name in COUNTER_NAMES if name not in totals]
    if missing:
        raise SweepError(f"scenario {what}: the report's totals lack {', '.join(missing)}")
    return report


def sweep(binary: str, families: Sequence[Family], quick: bool, seed: int, scenario_dir: str,
          progress: Progress) -> tuple[list[dict[str, Any]], list[str]]:
    """Runs every point of `families`; returns the CSV rows (dicts) in run order."""
    plan = []  # (family, value, scenario, its path, lazy, pcid)
    for fam in families:
        for value in (fam.quick_points if quick else fam.points):
            scenario = sweep_gen.generate(fam.name, value, seed=seed, quick=quick)
            name = f"{fam.name}-{value}.json"
            path = os.path.join(scenario_dir, name)
            scenario.write(path)
            for lazy, pcid in fam.modes:
                plan.append((fam, value, scenario, path, lazy, pcid))
    rows = []
    extra = []
    for index, (fam, value, scenario, path, lazy, pcid) in enumerate(plan, 1):
        what = describe_point(fam.name, value)
        pcid_text = f" pcid={pcid}" if len(set(m[1] for m in fam.modes)) > 1 else ""
        progress.show(f"sweep: {index}/{len(plan)} {what} lazy={lazy}{pcid_text}")
        report_path = os.path.join(scenario_dir,
                                   f"{fam.name}-{value}.lazy-{lazy}.pcid-{pcid}.report.json")
        regenerate = (f"scripts/sweep_gen.py {fam.name} {value} --seed {seed}"
                      + (" --quick" if quick else ""))
        report = run_one(binary, path, report_path, lazy, pcid,
                         f"'{scenario.name}' (made by {regenerate})")
        totals = report["totals"]
        row = {
            "family": fam.name,
            "parameter": fam.parameter,
            "value": value,
            "seed": seed,
            "scenario": scenario.name,
            "cpus": scenario.cpus,
            "steps": report.get("run", {}).get("steps_total", ""),
            "lazy": report["mode"].get("lazy", lazy),
            "pcid": report["mode"].get("pcid", pcid),
            "asids": report["mode"].get("asids", ""),
        }
        for name in COUNTER_NAMES:
            row[name] = totals[name]
        for name in sorted(totals):
            if name not in COUNTER_NAMES and isinstance(totals[name], int):
                row[name] = totals[name]
                if name not in extra:
                    extra.append(name)
        rows.append(row)
    return rows, list(BASE_COLUMNS) + list(COUNTER_NAMES) + sorted(extra)


# ---- output ---------------------------------------------------------------------------------

def read_csv(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, columns) of a sweep.csv, with the numbers as ints (for --plot-only)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except OSError as e:
        raise SweepError(f"cannot read {path}: {e}") from None
    if columns[:len(BASE_COLUMNS)] != list(BASE_COLUMNS):
        raise SweepError(f"{path} is not a sweep.csv (columns {columns[:len(BASE_COLUMNS)]})")
    for row in rows:
        for key, value in row.items():
            if key not in ("family", "parameter", "scenario", "lazy", "pcid") and value != "":
                try:
                    row[key] = int(value)
                except ValueError:
                    raise SweepError(f"{path}: {key} is not a number: {value!r}") from None
    return rows, columns


def looks_quick(rows: Sequence[dict[str, Any]], families: Sequence[Family]) -> bool:
    """True when every family of `rows` has exactly its --quick points: the CSV then comes from
    a --quick sweep, whose plots name the QUICK sizes."""
    for fam in families:
        values = {row["value"] for row in rows if row["family"] == fam.name}
        if values and values != set(fam.quick_points):
            return False
    return any(row["family"] == fam.name for fam in families for row in rows)


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def _by_value(rows: Sequence[dict[str, Any]], family: str, lazy: str,
              pcid: str) -> dict[int, dict[str, Any]]:
    """{value: row} for one family and mode."""
    return {r["value"]: r for r in rows
            if r["family"] == family and r["lazy"] == lazy and r["pcid"] == pcid}


def _values(rows: Sequence[dict[str, Any]], family: str) -> list[int]:
    return sorted({r["value"] for r in rows if r["family"] == family})


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def _num(v: float) -> str:
    """A count as an integer, a ratio with two decimals."""
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def _same(u: float, v: float) -> bool:
    return math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12)


def _constant(values: Iterable[float]) -> float | None:
    """The value when every one of `values` is the same, else None."""
    values = list(values)
    return values[0] if values and all(_same(v, values[0]) for v in values) else None


Coincidence = collections.namedtuple("Coincidence", "kind equal_at max_diff max_at")


def coincidence(xs: Sequence[int], a: Sequence[float], b: Sequence[float],
                rel_tol: float = 0.03) -> Coincidence:
    """How two series over the same xs compare, for the notes on the plots.

    kind: "identical" (the same y at every x: one line hides the other), "close" (different
    somewhere, but never further apart than rel_tol of the largest |y|: the lines lie on each
    other), "touch" (the same y at some xs only) or None. equal_at: the xs where they are equal;
    max_diff, max_at: the largest |a - b| and the first x where it occurs."""
    pairs = list(zip(xs, a, b))
    if not pairs:
        return Coincidence(None, [], 0, None)
    equal_at = [x for x, u, v in pairs if _same(u, v)]
    max_diff, max_at = 0, None
    for x, u, v in pairs:
        if abs(u - v) > max_diff and not _same(u, v):
            max_diff, max_at = abs(u - v), x
    scale = max(max(abs(u), abs(v)) for _, u, v in pairs)
    if len(equal_at) == len(pairs):
        kind = "identical"
    elif max_diff <= rel_tol * scale:
        kind = "close"
    elif equal_at:
        kind = "touch"
    else:
        kind = None
    return Coincidence(kind, equal_at, max_diff, max_at)


def _list(items: Iterable[object]) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def coincidence_note(c: Coincidence, xs: Sequence[int], a: Sequence[float], b: Sequence[float],
                     what: str, where: Callable[[int], str]) -> str | None:
    """The sentence that says two lines lie on each other (None when they do not): `what` names
    the quantity ("IPIs"), `where(x)` a point ("at 4 CPUs")."""
    if c.kind == "identical":
        return f"Lazy TLB on and off give the same {what} at every point: the two lines coincide."
    if c.kind == "close":
        i = xs.index(c.max_at)
        equal = (f"; equal at {len(c.equal_at)} of {len(xs)} points" if c.equal_at else "")
        return (f"Lazy TLB on and off nearly coincide: at most {_num(c.max_diff)} {what} apart "
                f"({_num(a[i])} on, {_num(b[i])} off {where(c.max_at)}){equal}.")
    if c.kind == "touch":
        shown = [x for x in c.equal_at][:4]
        values = [_num(a[xs.index(x)]) for x in shown]
        more = " and elsewhere" if len(c.equal_at) > len(shown) else ""
        return (f"Lazy TLB on and off are equal {_list(where(x) for x in shown)}{more} "
                f"({_list(values)} {what}), where the lines meet.")
    return None


NOTE_BOX = {"boxstyle": "round,pad=0.5", "facecolor": "#fffbe6", "edgecolor": "#c8a400",
            "linewidth": 0.8}
NOTE_SIZE = 9.5


def _panels(plt: ModuleType, nrows: int, ncols: int, figsize: tuple[float, float],
            note_ratio: float,
            sharey: bool = False) -> tuple[Any, list[list[Any]], list[list[Any]]]:
    """A figure of nrows x ncols panels, each with a strip below it for its notes (so that a
    note never covers the data). Returns (fig, panels, strips), both lists of rows."""
    fig = plt.figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[1, note_ratio] * nrows)
    panels, strips = [], []
    for r in range(nrows):
        row, strip_row = [], []
        for c in range(ncols):
            first = panels[0][0] if panels else (row[0] if row else None)
            row.append(fig.add_subplot(grid[2 * r, c], sharey=first if sharey else None))
            strip = fig.add_subplot(grid[2 * r + 1, c])
            strip.axis("off")
            strip_row.append(strip)
        panels.append(row)
        strips.append(strip_row)
    return fig, panels, strips


def _note(strip: Any, notes: Iterable[str | None], width: int) -> None:
    """The notes of a panel, in a box at the top of the strip below it; one paragraph each."""
    notes = [n for n in notes if n]
    if not notes:
        return
    bullet = "• " if len(notes) > 1 else ""
    indent = "   " if bullet else ""  # about the width of the bullet in the note's font
    text = "\n".join(textwrap.fill(n, width, initial_indent=bullet, subsequent_indent=indent)
                     for n in notes)
    note = strip.text(0.0, 1.0, text, transform=strip.transAxes, ha="left", va="top",
                      fontsize=NOTE_SIZE, bbox=NOTE_BOX)
    note.set_in_layout(False)  # the strip's height is reserved for it: keep the panels' widths


# Lazy off is drawn dashed with larger hollow markers, so that it stays visible where the two
# modes give the same numbers.
STYLE = {
    "on": {"color": "tab:blue", "marker": "o", "markersize": 5},
    "off": {"color": "tab:red", "marker": "s", "markersize": 8, "markerfacecolor": "none",
            "linestyle": "--"},
}
MODE_LABEL = {"on": "lazy TLB on (kernel threads borrow the last mm)",
              "off": "lazy TLB off (kernel threads load init_mm)"}
TITLE_SIZE = 11.5
SUPTITLE_SIZE = 12.5


def _style(lazy: str, **override: Any) -> dict[str, Any]:
    style = dict(STYLE[lazy])
    style.update(override)
    return style


def _sizes(family: str, quick: bool) -> dict[str, int]:
    return (sweep_gen.QUICK if quick else sweep_gen.FULL)[family]


def plot_kthread_share(plt: ModuleType, rows: Sequence[dict[str, Any]], quick: bool) -> Any:
    """Two panels: CR3 writes per run in both modes (a count), and the share saved (%)."""
    fam = sweep_gen.KTHREAD_SHARE
    sizes = _sizes(fam, quick)
    on = _by_value(rows, fam, "on", "modeled")
    off = _by_value(rows, fam, "off", "modeled")
    xs = sorted(set(on) & set(off))
    on_w = [on[x]["cr3_writes"] for x in xs]
    off_w = [off[x]["cr3_writes"] for x in xs]
    saved = [_pct(b - a, b) for a, b in zip(on_w, off_w)]
    cpus = _constant(on[x]["cpus"] for x in xs) or sizes["cpus"]
    switches = _constant([on[x]["context_switches"] for x in xs]
                         + [off[x]["context_switches"] for x in xs])
    fig, panels, strips = _panels(plt, 1, 2, (13, 6.4), 0.16)
    ax1, ax2 = panels[0]

    # Left: the counts.
    for lazy, ys in (("off", off_w), ("on", on_w)):
        ax1.plot(xs, ys, label=MODE_LABEL[lazy], **_style(lazy))
    if switches is not None:
        ax1.axhline(switches, color="gray", linestyle=":", linewidth=1.5,
                    label=f"one CR3 write per context switch ({switches} switches per run)")
    ax1.set_title("CR3 writes per run, lazy TLB on and off", fontsize=TITLE_SIZE)
    ax1.set_xlabel("context switches to kernel threads (% of all switches)")
    ax1.set_ylabel(f"CR3 writes (all {cpus} CPUs, per run)")
    ax1.set_ylim(bottom=0, top=max(on_w + off_w + [switches or 0, 1]) * 1.08)
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="lower left", fontsize=9)
    c = coincidence(xs, on_w, off_w)
    note = coincidence_note(c, xs, on_w, off_w, "CR3 writes", lambda x: f"at {x} %")
    if note and 0 in c.equal_at:
        note += (" With no switch to a kernel thread there is nothing to save: every switch "
                 "goes from one process to another and writes CR3.")
    _note(strips[0][0], [note], 82)

    # Right: the saving in percent.
    ax2.plot(xs, saved, color="tab:green", marker="o",
             label="saved = (lazy off − lazy on) / lazy off")
    for x, y in zip(xs, saved):
        ax2.annotate(f"{y:.0f} %", (x, y), textcoords="offset points", xytext=(0, 7),
                     ha="center", fontsize=9)
    ax2.set_title("Share of the CR3 writes that lazy TLB saves", fontsize=TITLE_SIZE)
    ax2.set_xlabel("context switches to kernel threads (% of all switches)")
    ax2.set_ylabel("CR3 writes saved (% of the lazy-off CR3 writes)")
    ax2.set_ylim(bottom=0, top=max(saved + [10]) * 1.18)
    ax2.grid(True, alpha=0.3)
    ax2.legend(loc="upper left", fontsize=9)
    _note(strips[0][1], ["A CR3 write loads an address space (a page-table root). Without lazy "
                         "TLB, every switch to a kernel thread loads init_mm, and the switch "
                         "back loads a process again. With lazy TLB, the kernel thread borrows "
                         "the loaded mm (no load), and the switch back needs no load either "
                         "when the same process returns."], 82)
    total = switches if switches is not None else sizes["switches_per_cpu"] * cpus
    fig.suptitle("CR3 writes saved by lazy TLB vs the share of context switches that go to "
                 "kernel threads\n"
                 f"{cpus} CPUs, each with {sizes['processes_per_cpu']} processes, a kworker and "
                 f"its idle task; {sizes['switches_per_cpu']} switches per CPU ({total} in all) "
                 "in random order; PCID modeled", fontsize=SUPTITLE_SIZE)
    return fig


def plot_processes_per_cpu(plt: ModuleType, rows: Sequence[dict[str, Any]], quick: bool) -> Any:
    """Four panels, lazy TLB on/off x PCID modeled/off, all in CR3 loads per time slice: a bar per
    point, split into the loads that keep the TLB and the loads that flush it."""
    fam = sweep_gen.PROCESSES_PER_CPU
    sizes = _sizes(fam, quick)
    asids = next((r["asids"] for r in rows if r["family"] == fam and r["asids"] != ""), 6)
    modes = [(lazy, pcid) for pcid in ("modeled", "off") for lazy in ("on", "off")
             if _by_value(rows, fam, lazy, pcid)]
    pcids = [p for p in ("modeled", "off") if any(m[1] == p for m in modes)]
    fig, panels, strips = _panels(plt, len(pcids), 2, (13.5, 5.6 * len(pcids) + 0.9), 0.22,
                                  sharey=True)
    cpus = next((r["cpus"] for r in rows if r["family"] == fam), sizes["cpus"])
    slices = sizes["slices_per_cpu"] * cpus
    tallest = max([1] + [r["cr3_writes"] / slices for r in rows if r["family"] == fam])
    top = tallest * 1.5  # room above the bars for the ASID labels and the legend
    for lazy, pcid in modes:
        ax = panels[pcids.index(pcid)][("on", "off").index(lazy)]
        strip = strips[pcids.index(pcid)][("on", "off").index(lazy)]
        by = _by_value(rows, fam, lazy, pcid)
        xs = sorted(by)
        keep = [by[x]["cr3_writes_noflush"] / slices for x in xs]
        flush = [by[x]["cr3_writes_flush"] / slices for x in xs]
        ax.bar(xs, keep, 0.7, color="tab:green", edgecolor="black", linewidth=0.5,
               label="CR3 loads that keep the TLB")
        ax.bar(xs, flush, 0.7, bottom=keep, color="tab:orange", edgecolor="black",
               linewidth=0.5, hatch="//", label="CR3 loads that flush the TLB")
        what = ("kernel threads borrow the last mm" if lazy == "on"
                else "kernel threads load init_mm")
        pcid_what = (f"PCID modeled: {asids} ASIDs per CPU" if pcid == "modeled"
                     else "PCID off: one ASID, flushed at every load")
        ax.set_title(f"Lazy TLB {lazy} ({what})\n{pcid_what}", fontsize=TITLE_SIZE)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", fontsize=9.5)
        ax.set_xticks(_values(rows, fam))
        ax.set_xlabel("processes per CPU")
        ax.tick_params(labelleft=True)
        ax.set_ylabel(f"CR3 loads per time slice\n(all {cpus} CPUs: loads / {slices} slices)")
        notes = []
        label_y = max([0] + [k + f for k, f in zip(keep, flush)]) + 0.04 * top
        if pcid == "modeled" and xs:
            # With lazy TLB off, init_mm takes one of the ASIDs too.
            fit = asids if lazy == "on" else asids - 1
            limit = fit + 0.5
            if xs[0] < limit < xs[-1]:
                ax.axvline(limit, color="black", linestyle="--", linewidth=1)
                left = (f"≤ {fit} processes:\nall fit in the {asids} ASIDs" if lazy == "on"
                        else f"≤ {fit} processes + init_mm:\nall fit in the {asids} ASIDs")
                ax.text(limit - 0.1, label_y, left + " ←", fontsize=9.5, ha="right",
                        va="bottom")
                ax.text(limit + 0.1, label_y, "→ more: ASIDs\nget reused", fontsize=9.5,
                        ha="left", va="bottom")
                notes.append(
                    f"Each CPU has {asids} ASIDs, each tagging the TLB entries of one mm. A load "
                    "of an mm that still holds its ASID keeps the TLB; beyond "
                    + (f"{asids} processes per CPU" if lazy == "on" else
                       f"{fit} processes per CPU (init_mm needs an ASID too)")
                    + ", ASIDs are taken round robin and more loads flush.")
        if xs and all(v == 0 for v in keep):
            notes.append("No CR3 load keeps the TLB: 0 at every point, so the bars have no "
                         "green part."
                         + (" Without PCIDs every CR3 load flushes the TLB." if pcid == "off"
                            else ""))
        kthread = _constant(by[x]["switch_user_to_kernel"] for x in xs) if xs else None
        if lazy == "off" and kthread:
            per_slice = _constant(by[x]["cr3_writes"] / slices for x in xs)
            twice = " twice per time slice" if per_slice is not None and per_slice == 2 else ""
            notes.append(f"Lazy TLB off loads CR3{twice}: the process's mm, and "
                         f"init_mm at every switch to the kworker or idle ({kthread} init_mm "
                         "loads per run)."
                         + (" init_mm has an ASID of its own, so these extra loads keep the "
                            "TLB; lazy TLB on needs none of them." if pcid == "modeled" else ""))
        few = [x for x in xs if 0 < by[x]["cr3_writes"] <= by[x]["cpus"]]
        for x in few:
            n = by[x]["cr3_writes"]
            ax.text(x, (by[x]["cr3_writes"]) / slices + 0.02 * top, f"{n}\nloads",
                    fontsize=9, ha="center", va="bottom")
        if few:
            x = few[0]
            notes.append(f"{x} process{'es' if x != 1 else ''} per CPU: only "
                         f"{by[x]['cr3_writes']} CR3 loads per run, the first one on each CPU. "
                         "The kworker and idle keep the process's mm loaded, so it comes back "
                         "without a load.")
        _note(strip, notes, 86)
    panels[0][0].set_ylim(0, top)
    fig.suptitle("CR3 loads per time slice vs processes per CPU: the loads that keep the TLB "
                 "and those that flush it\n"
                 f"{cpus} CPUs, {sizes['slices_per_cpu']} time slices per CPU ({slices} in all), "
                 "each followed by a switch to a kworker or idle; the processes of a CPU take "
                 "turns", fontsize=SUPTITLE_SIZE)
    return fig


def plot_ipis_vs_cpus(plt: ModuleType, rows: Sequence[dict[str, Any]], quick: bool) -> Any:
    """Four panels, one unit each: IPIs, IPIs per shootdown, CR3 writes, leave_mm calls."""
    fam = sweep_gen.IPIS_VS_CPUS
    sizes = _sizes(fam, quick)
    on = _by_value(rows, fam, "on", "modeled")
    off = _by_value(rows, fam, "off", "modeled")
    xs = sorted(set(on) & set(off))
    fig, panels, strips = _panels(plt, 2, 2, (13.5, 11.8), 0.2)
    (ax1, ax2), (ax3, ax4) = panels
    shootdowns = _constant([on[x]["shootdowns"] for x in xs] + [off[x]["shootdowns"] for x in xs])

    def where(x: int) -> str:
        return f"at {x} CPU{'s' if x != 1 else ''}"

    def column(key: str) -> dict[str, list[int]]:
        return {lazy: [by[x][key] for x in xs] for lazy, by in (("on", on), ("off", off))}

    def both(ax: Any, ys: Mapping[str, Sequence[float]], label: str = "") -> None:
        for lazy in ("on", "off"):
            ax.plot(xs, ys[lazy], label=label + MODE_LABEL[lazy], **_style(lazy))

    # 1: IPIs sent.
    ipis = column("ipis_sent")
    both(ax1, ipis)
    ax1.set_title("TLB-flush IPIs sent per run", fontsize=TITLE_SIZE)
    ax1.set_ylabel("TLB-flush IPIs sent (all CPUs, per run)")
    c1 = coincidence(xs, ipis["on"], ipis["off"])
    _note(strips[0][0], [coincidence_note(c1, xs, ipis["on"], ipis["off"], "IPIs", where),
                         "A CPU gets a flush IPI when another CPU changes the page tables of an "
                         "mm the first one may have in its TLB."], 84)

    # 2: IPIs per shootdown.
    ratio = {lazy: [by[x]["ipis_sent"] / by[x]["shootdowns"] if by[x]["shootdowns"] else 0
                    for x in xs] for lazy, by in (("on", on), ("off", off))}
    both(ax2, ratio)
    ax2.plot(xs, [x - 1 for x in xs], color="gray", linestyle=":", linewidth=1.5,
             label="an IPI to every other CPU (CPUs − 1)")
    ax2.set_title("TLB-flush IPIs per shootdown", fontsize=TITLE_SIZE)
    ax2.set_ylabel("IPIs per shootdown\n(IPIs sent / flush_tlb_mm_range calls)")
    count = (f"Every run makes {shootdowns} shootdowns (flush_tlb_mm_range calls) in both modes."
             if shootdowns is not None else "")
    _note(strips[0][1], [count, coincidence_note(coincidence(xs, ratio["on"], ratio["off"]), xs,
                                                 ratio["on"], ratio["off"],
                                                 "IPIs per shootdown", where)], 84)

    # 3: CR3 writes.
    writes = column("cr3_writes")
    both(ax3, writes)
    ax3.set_title("CR3 writes (address-space loads) per run", fontsize=TITLE_SIZE)
    ax3.set_ylabel("CR3 writes (all CPUs, per run)")
    _note(strips[1][0], [
        "The CR3 writes include the leave_mm loads of init_mm (right).",
        coincidence_note(coincidence(xs, writes["on"], writes["off"]), xs, writes["on"],
                         writes["off"], "CR3 writes", where)], 84)

    # 4: leave_mm.
    leave = column("leave_mm")
    off_zero = all(v == 0 for v in leave["off"])
    for lazy in ("on", "off"):
        label = MODE_LABEL[lazy] + (": 0 at every point" if lazy == "off" and off_zero else "")
        # clip_on=False: a series at 0 is drawn over the x axis, not hidden behind it.
        ax4.plot(xs, leave[lazy], label=label, clip_on=False, zorder=3, **_style(lazy))
    ax4.set_title("leave_mm calls per run (each loads init_mm: one CR3 write)",
                  fontsize=TITLE_SIZE)
    ax4.set_ylabel("leave_mm calls (all CPUs, per run)")
    _note(strips[1][1], [
        "leave_mm: a CPU that still has an mm loaded but no longer uses it switches to init_mm, "
        "e.g. a lazy CPU that gets a flush IPI for the mm it borrowed.",
        "Lazy TLB off: 0 at every point (the red squares on the x axis): no CPU is ever lazy."
        if off_zero else coincidence_note(coincidence(xs, leave["on"], leave["off"]), xs,
                                          leave["on"], leave["off"], "leave_mm calls", where)],
        84)

    for ax in (ax1, ax2, ax3, ax4):
        ax.set_xlabel("CPUs (one thread of the process on each)")
        ax.set_xticks(_values(rows, fam))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=9.5)
        ax.set_ylim(top=max(ax.get_ylim()[1], 1) * 1.25)  # room for the legend
    alike = (": lazy TLB on and off send "
             + ("the same IPIs" if c1.kind == "identical" else "nearly the same IPIs")
             if c1.kind in ("identical", "close") else ", lazy TLB on and off")
    total = f" ({shootdowns} shootdowns per run)" if shootdowns is not None else ""
    fig.suptitle(f"TLB-flush IPIs vs the number of CPUs{alike}\n"
                 f"One process with a thread on every CPU; {sizes['rounds']} rounds of context "
                 f"switches, each with a munmap,\nand a fork + exec + exit every "
                 f"{sweep_gen.FORK_EVERY} rounds{total}; PCID modeled", fontsize=SUPTITLE_SIZE)
    return fig


PLOTTERS = {
    sweep_gen.KTHREAD_SHARE: plot_kthread_share,
    sweep_gen.PROCESSES_PER_CPU: plot_processes_per_cpu,
    sweep_gen.IPIS_VS_CPUS: plot_ipis_vs_cpus,
}


def import_pyplot() -> ModuleType:
    try:
        import matplotlib
    except ImportError:
        raise SweepError(f"{sys.executable} cannot import matplotlib: install python3-matplotlib "
                         "(apt-get install -y python3-matplotlib, or bash scripts/setup.sh) "
                         "and run with /usr/bin/python3") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_outputs(out_dir: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                  families: Sequence[Family], quick: bool, plt: ModuleType,
                  write_csv: bool = True) -> list[str]:
    """Writes sweep.csv (unless write_csv is false) and each family's plot to temporary files
    in out_dir, then renames them all into place."""
    os.makedirs(out_dir, exist_ok=True)
    temps: list[tuple[str, str]] = []  # (tmp, final)

    def temp_for(name: str) -> tuple[int, str]:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
        temps.append((tmp, os.path.join(out_dir, name)))
        return fd, tmp

    try:
        if write_csv:
            fd, _ = temp_for(CSV_NAME)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(csv_text(rows, columns))
                f.flush()
                os.fsync(f.fileno())
        for fam in families:
            fig = PLOTTERS[fam.name](plt, rows, quick)
            fd, tmp = temp_for(fam.plot)
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format="png", dpi=110)
                f.flush()
                os.fsync(f.fileno())
            plt.close(fig)
        for tmp, final in temps:
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    return [final for _, final in temps]


# ---- main -----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the activemm parameter sweeps (docs/sweep.md): a CSV and PNG plots.")
    parser.add_argument("--out", default=None,
                        help="output directory (default docs/sweep/ of the project; with "
                             "--plot-only CSV, the CSV's directory)")
    parser.add_argument("--quick", action="store_true",
                        help="a few points per family with small scenarios (tests)")
    parser.add_argument("--seed", type=int, default=1, help="the generator seed (default 1)")
    parser.add_argument("--family", action="append", choices=list(FAMILIES),
                        help="run only this family (repeatable; default: all)")
    parser.add_argument("--activemm", metavar="PATH",
                        help="the activemm binary (default $ACTIVEMM_BIN, else "
                             "build/vmm/activemm)")
    parser.add_argument("--keep-scenarios", metavar="DIR",
                        help="also keep the generated scenarios and reports in DIR")
    parser.add_argument("--plot-only", nargs="?", const="", default=None, metavar="CSV",
                        help="run nothing: redraw the plots from CSV (default OUT/sweep.csv), "
                             "a sweep.csv of an earlier sweep; the CSV is not rewritten")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (os.path.dirname(os.path.abspath(args.plot_only)) if args.plot_only
                    else DEFAULT_OUT)
    families = [FAMILIES[name] for name in FAMILIES
                if not args.family or name in args.family]
    progress = Progress(progress_wanted())
    start = time.monotonic()
    try:
        plt = import_pyplot()
        if args.plot_only is not None:
            source = args.plot_only or os.path.join(args.out, CSV_NAME)
            rows, columns = read_csv(source)
            present = {row["family"] for row in rows}
            families = [fam for fam in families if fam.name in present]
            if not families:
                raise SweepError(f"{source} has no rows of the families to plot")
            quick = args.quick or looks_quick(rows, families)
            written = write_outputs(args.out, rows, columns, families, quick, plt,
                                    write_csv=False)
            print(f"sweep: redrew {', '.join(os.path.basename(p) for p in written)} in "
                  f"{args.out} from {source}{' (--quick sizes)' if quick else ''}")
            return 0
        binary = find_binary(args.activemm)
        if args.keep_scenarios:
            os.makedirs(args.keep_scenarios, exist_ok=True)
            rows, columns = sweep(binary, families, args.quick, args.seed,
                                  args.keep_scenarios, progress)
        else:
            with tempfile.TemporaryDirectory(prefix="activemm-sweep-") as tmp:
                rows, columns = sweep(binary, families, args.quick, args.seed, tmp, progress)
        progress.clear()
        written = write_outputs(args.out, rows, columns, families, args.quick, plt)
    except SweepError as e:
        progress.clear()
        print(f"sweep: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.clear()
        print("sweep: interrupted; nothing written", file=sys.stderr)
        return 130
    scenarios = len({(r["family"], r["value"]) for r in rows})
    names = ", ".join(os.path.basename(p) for p in written)
    print(f"sweep: {len(rows)} runs of {scenarios} scenarios in {time.monotonic() - start:.1f} s"
          f"{' (--quick)' if args.quick else ''}; wrote {names} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
