#!/usr/bin/python3
"""Parameter sweeps over generated scenarios: a CSV of counters and three PNG plots.

    /usr/bin/python3 scripts/sweep.py [--out DIR] [--quick] [--seed S] [--family NAME ...]
                                      [--activemm PATH] [--keep-scenarios DIR] [--plot-only]

Three families of scenarios (scripts/sweep_gen.py, docs/sweep.md), each point one scenario
generated from the seed, each run by `activemm run SCENARIO.json --json REPORT
--lazy-tlb=on|off --pcid=modeled|off`:

  kthread-share      4 CPUs, 0..90 % of the switches to kernel threads (step 10), lazy TLB on
                     and off: the CR3 writes lazy TLB saves      -> kthread_share.png
  processes-per-cpu  4 CPUs, 1..8 processes per CPU, lazy on/off x PCID modeled/off: the
                     TLB-preserving CR3 loads (cr3_writes_noflush) -> processes_per_cpu.png
  ipis-vs-cpus       1..16 CPUs running threads of one process, with munmaps and forks, lazy
                     on/off: the TLB flush IPIs (ipis_sent)       -> ipis_vs_cpus.png

Output in DIR (default docs/sweep/): sweep.csv (one row per scenario and mode: the family, the
swept parameter and value, the modes, and every total counter of the report) and the plots of
the families that ran. Every file is written to a temporary file beside it and renamed into
place at the end, so a file is there whole or not at all; a failed run writes nothing.

The binary: --activemm PATH, else $ACTIVEMM_BIN, else build/vmm/activemm. A run that exits
with a non-zero status stops the sweep with a message naming the scenario, the mode and the
exit status (exit status 1). On a terminal (and without $CI) a progress line is updated in
place on stderr; otherwise only errors and the final summary line are printed.
--quick runs a few points per family with small scenarios (for tests); --plot-only redraws
the plots from DIR/sweep.csv without running anything.
"""

import argparse
import collections
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)
import sweep_gen  # noqa: E402
from activemm_scenario import COUNTER_NAMES  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "docs", "sweep")
DEFAULT_BIN = os.path.join(ROOT, "build", "vmm", "activemm")
RUN_TIMEOUT = 600  # seconds for one activemm run (its own watchdog stops a stuck guest first)

CSV_NAME = "sweep.csv"
BASE_COLUMNS = ("family", "parameter", "value", "seed", "scenario", "cpus", "steps", "lazy",
                "pcid", "asids")

# activemm's exit statuses (vmm/exit_codes.h, docs/report.md).
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


def describe_point(family, value):
    if family == sweep_gen.KTHREAD_SHARE:
        return f"{family} {value}%"
    if family == sweep_gen.PROCESSES_PER_CPU:
        return f"{family} {value}"
    return f"{family} {value} cpu{'s' if value != 1 else ''}"


# ---- progress ---------------------------------------------------------------------------------

class Progress:
    """One line on stderr, rewritten in place; only on a terminal outside CI."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.width = 0

    def show(self, text):
        if not self.enabled:
            return
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def clear(self):
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def progress_wanted():
    return sys.stderr.isatty() and not os.environ.get("CI")


# ---- running --------------------------------------------------------------------------------

def find_binary(path):
    binary = path or os.environ.get("ACTIVEMM_BIN") or DEFAULT_BIN
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise SweepError(f"the activemm binary {binary} does not exist or is not executable "
                         "(build it with `cmake --build build`, or give --activemm PATH or "
                         "$ACTIVEMM_BIN)")
    return binary


def run_one(binary, scenario_path, report_path, lazy, pcid, what):
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


def sweep(binary, families, quick, seed, scenario_dir, progress):
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

def read_csv(path):
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


def csv_text(rows, columns):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def _series(rows, family, lazy, pcid, key):
    """[(value, key(row))] for one family and mode, in value order."""
    pts = [(r["value"], key(r)) for r in rows
           if r["family"] == family and r["lazy"] == lazy and r["pcid"] == pcid]
    return sorted(pts)


def _values(rows, family):
    return sorted({r["value"] for r in rows if r["family"] == family})


def _xy(points):
    return [p[0] for p in points], [p[1] for p in points]


def _pct(part, whole):
    return 100.0 * part / whole if whole else 0.0


# Lazy off is drawn dashed with larger hollow markers, so that it stays visible where the two
# modes give the same numbers.
STYLE = {
    "on": {"color": "tab:blue", "marker": "o", "markersize": 5},
    "off": {"color": "tab:red", "marker": "s", "markersize": 8, "markerfacecolor": "none",
            "linestyle": "--"},
}


def _style(lazy, **override):
    style = dict(STYLE[lazy])
    style.update(override)
    return style


def plot_kthread_share(plt, rows, quick):
    fam = sweep_gen.KTHREAD_SHARE
    sizes = (sweep_gen.QUICK if quick else sweep_gen.FULL)[fam]
    on = {v: r for v, r in _series(rows, fam, "on", "modeled", lambda r: r)}
    off = {v: r for v, r in _series(rows, fam, "off", "modeled", lambda r: r)}
    xs = sorted(set(on) & set(off))
    saved = [_pct(off[x]["cr3_writes"] - on[x]["cr3_writes"], off[x]["cr3_writes"]) for x in xs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax1.plot(xs, saved, color="tab:green", marker="o", label="saved: (off − on) / off")
    for x, y in zip(xs, saved):
        ax1.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6),
                     ha="center", fontsize=8)
    ax1.set_title("CR3 writes saved by lazy TLB (%) vs kernel-thread share")
    ax1.set_xlabel("context switches to kernel threads (% of all switches)")
    ax1.set_ylabel("CR3 writes saved by lazy TLB (% of lazy-off writes)")
    ax1.set_ylim(bottom=0, top=max(saved + [10]) * 1.15)
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="upper left")
    for lazy, series in (("off", off), ("on", on)):
        ax2.plot(xs, [series[x]["cr3_writes"] for x in xs], label=f"CR3 writes, lazy TLB {lazy}",
                 **_style(lazy))
    ax2.plot(xs, [off[x]["context_switches"] for x in xs], color="gray", linestyle="--",
             label="context switches (both modes)")
    ax2.set_title("CR3 writes vs kernel-thread share")
    ax2.set_xlabel("context switches to kernel threads (% of all switches)")
    ax2.set_ylabel("CR3 writes (count, all CPUs)")
    ax2.set_ylim(bottom=0)
    ax2.grid(True, alpha=0.3)
    ax2.legend()
    fig.suptitle(f"{fam}: {sizes['cpus']} CPUs, {sizes['processes_per_cpu']} processes + a "
                 f"kworker + idle per CPU, {sizes['switches_per_cpu']} switches per CPU, "
                 "PCID modeled")
    return fig


def plot_processes_per_cpu(plt, rows, quick):
    fam = sweep_gen.PROCESSES_PER_CPU
    sizes = (sweep_gen.QUICK if quick else sweep_gen.FULL)[fam]
    asids = next((r["asids"] for r in rows if r["family"] == fam and r["asids"] != ""), 6)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for pcid in ("modeled", "off"):
        for lazy in ("on", "off"):
            pts = _series(rows, fam, lazy, pcid, lambda r: r["cr3_writes_noflush"])
            if not pts:
                continue
            x, y = _xy(pts)
            style = _style(lazy) if pcid == "modeled" else _style(lazy, linestyle=":", alpha=0.6)
            ax1.plot(x, y, label=f"lazy TLB {lazy}, PCID {pcid}", **style)
            slices = sizes["slices_per_cpu"]
            x, y = _xy(_series(rows, fam, lazy, pcid,
                               lambda r: r["cr3_writes_flush"] / (slices * r["cpus"])))
            ax2.plot(x, y, label=f"lazy TLB {lazy}, PCID {pcid}", **style)
    for ax in (ax1, ax2):
        ax.axvline(asids + 0.5, color="gray", linestyle="--", linewidth=1)
        ax.text(asids + 0.55, 0.02, f"> {asids} ASIDs (TLB_NR_DYN_ASIDS)", rotation=90,
                transform=ax.get_xaxis_transform(), fontsize=8, color="gray", va="bottom")
        ax.set_xlabel("processes per CPU")
        ax.set_xticks(_values(rows, fam))
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    ax1.set_title("TLB-preserving CR3 loads (cr3_writes_noflush) vs processes per CPU")
    ax1.set_ylabel("CR3 loads without TLB flush (count, all CPUs)")
    ax2.set_title("TLB-flushing CR3 loads (cr3_writes_flush) per time slice")
    ax2.set_ylabel("flushing CR3 loads per time slice (count / slice)")
    # The same four series in both panels: one legend below them.
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
    fig.subplots_adjust(bottom=0.2)
    fig.suptitle(f"{fam}: {sizes['cpus']} CPUs, {sizes['slices_per_cpu']} time slices per CPU, "
                 "each followed by a switch to a kworker or idle")
    return fig


def plot_ipis_vs_cpus(plt, rows, quick):
    fam = sweep_gen.IPIS_VS_CPUS
    sizes = (sweep_gen.QUICK if quick else sweep_gen.FULL)[fam]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for lazy in ("on", "off"):
        x, y = _xy(_series(rows, fam, lazy, "modeled", lambda r: r["ipis_sent"]))
        ax1.plot(x, y, label=f"IPIs sent, lazy TLB {lazy}", **_style(lazy))
        x, y = _xy(_series(rows, fam, lazy, "modeled",
                           lambda r: r["ipis_sent"] / r["shootdowns"] if r["shootdowns"] else 0))
        ax2.plot(x, y, label=f"lazy TLB {lazy}", **_style(lazy))
    x, y = _xy(_series(rows, fam, "on", "modeled", lambda r: r["leave_mm"]))
    ax1.plot(x, y, color="tab:blue", linestyle=":", label="leave_mm (lazy TLB on)")
    x, y = _xy(_series(rows, fam, "on", "modeled", lambda r: r["shootdowns"]))
    ax1.plot(x, y, color="gray", linestyle="--", label="shootdowns (both modes)")
    ax2.plot(x, [v - 1 for v in x], color="gray", linestyle="--",
             label="every other CPU (CPUs − 1)")
    ax1.set_title("TLB flush IPIs (ipis_sent) vs CPUs")
    ax1.set_ylabel("IPIs sent (count, all CPUs)")
    ax2.set_title("IPIs per shootdown vs CPUs")
    ax2.set_ylabel("IPIs sent per flush_tlb_mm_range call")
    for ax in (ax1, ax2):
        ax.set_xlabel("CPUs (one thread of the process per CPU)")
        ax.set_xticks(_values(rows, fam))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{fam}: {sizes['rounds']} rounds of switches, each with a munmap; a fork + "
                 f"exec + exit every {sweep_gen.FORK_EVERY} rounds; PCID modeled")
    return fig


PLOTTERS = {
    sweep_gen.KTHREAD_SHARE: plot_kthread_share,
    sweep_gen.PROCESSES_PER_CPU: plot_processes_per_cpu,
    sweep_gen.IPIS_VS_CPUS: plot_ipis_vs_cpus,
}


def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SweepError(f"{sys.executable} cannot import matplotlib: install python3-matplotlib "
                         "(apt-get install -y python3-matplotlib, or bash scripts/setup.sh) "
                         "and run with /usr/bin/python3") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_outputs(out_dir, rows, columns, families, quick, plt, write_csv=True):
    """Writes sweep.csv (unless write_csv is false) and each family's plot to temporary files
    in out_dir, then renames them all into place."""
    os.makedirs(out_dir, exist_ok=True)
    temps = []  # (tmp, final)

    def temp_for(name):
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
            fig.tight_layout(rect=(0, 0.06 if fig.legends else 0, 1, 1))
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

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Run the activemm parameter sweeps (docs/sweep.md): a CSV and PNG plots.")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output directory (default docs/sweep/ of the project)")
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
    parser.add_argument("--plot-only", action="store_true",
                        help="run nothing: redraw the plots from DIR/sweep.csv (add --quick "
                             "if it came from a --quick sweep)")
    args = parser.parse_args(argv)
    families = [FAMILIES[name] for name in FAMILIES
                if not args.family or name in args.family]
    progress = Progress(progress_wanted())
    start = time.monotonic()
    try:
        plt = import_pyplot()
        if args.plot_only:
            rows, columns = read_csv(os.path.join(args.out, CSV_NAME))
            present = {row["family"] for row in rows}
            families = [fam for fam in families if fam.name in present]
            written = write_outputs(args.out, rows, columns, families, args.quick, plt,
                                    write_csv=False)
            print(f"sweep: redrew {', '.join(os.path.basename(p) for p in written)} in "
                  f"{args.out}")
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
