"""scripts/sweep.py, the parameter sweeps: CSV, plots, --plot-only, progress and errors.

CTest runs this file as two tests (tests/CMakeLists.txt), both with ACTIVEMM_BIN set to the
built binary: `sweep_kvm` (label kvm) runs `sweep.py --quick` on every quick point of the real
tool; where /dev/kvm is unusable those tests skip, unless ACTIVEMM_REQUIRE_KVM=1, and without
ACTIVEMM_BIN they skip too. `sweep` (label host) runs the rest, which need neither: the tests
with a stand-in activemm (a small Python script that writes a report), --plot-only, and the
readability of the figures drawn from docs/sweep/sweep.csv (the data of the last real sweep).

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/python/test_sweep.py
"""

import csv
import json
import os
import pty
import shutil
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPTS = os.path.join(ROOT, "scripts")
SWEEP = os.path.join(SCRIPTS, "sweep.py")
GEN = os.path.join(SCRIPTS, "sweep_gen.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

from activemm import sweep, sweep_gen
from activemm.scenario import COUNTER_NAMES
from pytest_helpers import PYTHON, kvm

EXPECTED_COLUMNS = list(sweep.BASE_COLUMNS) + list(COUNTER_NAMES)
PLOTS = ["kthread_share.png", "processes_per_cpu.png", "ipis_vs_cpus.png"]
DOCS_CSV = os.path.join(ROOT, "docs", "sweep", "sweep.csv")  # the last real sweep


def quick_runs():
    """(family, value, lazy, pcid) of every run of the quick sweep, in run order."""
    return [(fam.name, value, lazy, pcid) for fam in sweep.FAMILIES.values()
            for value in fam.quick_points for lazy, pcid in fam.modes]


# The timeout only guards against a hang: the quick sweep takes about 3 minutes under nested KVM on
# a quiet host and more on a loaded one.
def run_sweep(*args, env=None, timeout=1200):
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(env or {})
    return subprocess.run([PYTHON, SWEEP, *args], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL, env=environ)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def check_png(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image

    data = open(path, "rb").read()
    assert len(data) > 1000, path
    assert data[:8] == PNG_MAGIC, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400, image.shape


# ---- a stand-in for activemm ------------------------------------------------------------------

FAKE = textwrap.dedent("""\
    #!/usr/bin/python3
    # Stands in for `activemm run SCENARIO --json OUT --lazy-tlb=L --pcid=P`: counts the
    # scenario's switches and writes a report; exits FAKE_EXIT for a scenario named FAKE_FAIL.
    import json, os, sys
    args = sys.argv[1:]
    assert args[0] == "run", args
    doc = json.load(open(args[1]))
    out = args[args.index("--json") + 1]
    lazy = [a.split("=")[1] for a in args if a.startswith("--lazy-tlb=")][0]
    pcid = [a.split("=")[1] for a in args if a.startswith("--pcid=")][0]
    if doc["name"] == os.environ.get("FAKE_FAIL"):
        print("step 3 (run): something went wrong", file=sys.stderr)
        sys.exit(int(os.environ.get("FAKE_EXIT", "1")))
    steps = []
    for s in doc["steps"]:
        if s["op"] == "parallel":
            steps.extend(x for lst in s["steps"].values() for x in lst)
        else:
            steps.append(s)
    switches = sum(s["op"] in ("run", "idle") for s in steps)
    totals = dict.fromkeys(COUNTERS, 0)
    totals.update(context_switches=switches,
                  cr3_writes=switches if lazy == "off" else switches // 2,
                  shootdowns=sum(s["op"] == "munmap" for s in steps), ipis_sent=doc["cpus"] - 1)
    totals["cr3_writes_noflush"] = 0 if pcid == "off" else totals["cr3_writes"] // 2
    report = {"scenario": doc["name"], "mode": {"lazy_tlb": lazy == "on", "lazy": lazy,
              "pcid": pcid, "asids": 6}, "totals": totals,
              "run": {"outcome": "completed", "steps_total": len(steps)}, "ok": True}
    json.dump(report, open(out, "w"))
    print("ok")
    """).replace("COUNTERS", repr(list(COUNTER_NAMES)))


@pytest.fixture
def fake_bin(tmp_path):
    path = tmp_path / "fake-activemm"
    path.write_text(FAKE, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def test_with_a_stand_in_every_run_gives_a_row_and_every_plot_is_written(fake_bin, tmp_path):
    out_dir = tmp_path / "out"
    r = run_sweep("--quick", "--out", str(out_dir), "--activemm", fake_bin)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # not a terminal: no progress
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("sweep: 24 runs of 9 ")
    assert sorted(os.listdir(out_dir)) == sorted(PLOTS + ["sweep.csv"])
    columns, rows = read_csv(out_dir / "sweep.csv")
    assert columns == EXPECTED_COLUMNS
    assert [(r["family"], int(r["value"]), r["lazy"], r["pcid"]) for r in rows] == quick_runs()
    for plot in PLOTS:
        check_png(out_dir / plot)


def test_one_family_writes_its_plot_only_and_the_same_csv_twice(fake_bin, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out_dir in (a, b):
        r = run_sweep("--quick", "--family", sweep_gen.IPIS_VS_CPUS, "--out", str(out_dir),
                      env={"ACTIVEMM_BIN": fake_bin})
        assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(a)) == ["ipis_vs_cpus.png", "sweep.csv"]
    assert (a / "sweep.csv").read_bytes() == (b / "sweep.csv").read_bytes()


@pytest.mark.parametrize("status, meaning", [
    (1, "a check failed or the verifier found a violation"), (3, "guest failure")])
def test_a_failing_run_stops_the_sweep_naming_the_scenario(fake_bin, tmp_path, status, meaning):
    out_dir = tmp_path / "out"
    r = run_sweep("--quick", "--out", str(out_dir), "--activemm", fake_bin,
                  env={"FAKE_FAIL": "sweep processes-per-cpu 6 seed 1", "FAKE_EXIT": str(status)})
    assert r.returncode == 1
    assert r.stdout == ""
    first = r.stderr.splitlines()[0]
    assert first == (f"sweep: activemm run failed on scenario 'sweep processes-per-cpu 6 seed 1' "
                     f"(made by scripts/sweep_gen.py processes-per-cpu 6 --seed 1 --quick) "
                     f"(lazy=on, pcid=modeled): exit status {status} ({meaning})")
    assert "step 3 (run): something went wrong" in r.stderr
    assert not out_dir.exists()  # nothing written


def test_a_missing_binary_is_named(tmp_path):
    r = run_sweep("--quick", "--out", str(tmp_path / "o"), "--activemm", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert "nope does not exist" in r.stderr
    assert not (tmp_path / "o").exists()


def _sweep_on_a_terminal(fake_bin, out_dir, env):
    """Runs the sweep with stderr on a pseudo-terminal; returns (status, what it wrote there)."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(env)
    proc = subprocess.Popen([PYTHON, SWEEP, "--quick", "--family", sweep_gen.KTHREAD_SHARE,
                             "--out", str(out_dir), "--activemm", fake_bin],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
                            env=environ)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    proc.stdout.read()
    status = proc.wait(timeout=60)
    os.close(leader)
    return status, b"".join(chunks).decode()


def test_progress_on_a_terminal_but_not_in_ci(fake_bin, tmp_path):
    status, text = _sweep_on_a_terminal(fake_bin, tmp_path / "tty", {})
    assert status == 0
    assert "\rsweep: 1/6 kthread-share 0% lazy=on" in text
    assert "sweep: 6/6 kthread-share 90% lazy=off" in text
    assert "\n" not in text and text.endswith("\r")  # one line, cleared at the end
    status, text = _sweep_on_a_terminal(fake_bin, tmp_path / "ci", {"CI": "true"})
    assert status == 0
    assert text == ""


def test_plots_from_synthetic_rows(tmp_path):
    """The plotters and the atomic writer, without any run."""
    rows = []
    for fam in sweep.FAMILIES.values():
        for value in fam.points:
            for lazy, pcid in fam.modes:
                row = dict.fromkeys(COUNTER_NAMES, 0)
                row.update(family=fam.name, parameter=fam.parameter, value=value, seed=1,
                           scenario="s", cpus=4, steps=10, lazy=lazy, pcid=pcid, asids=6,
                           context_switches=100, cr3_writes=100 - value if lazy == "on" else 100,
                           cr3_writes_noflush=0 if pcid == "off" else 50, shootdowns=10,
                           ipis_sent=value)
                rows.append(row)
    plt = sweep.import_pyplot()
    written = sweep.write_outputs(str(tmp_path), rows, EXPECTED_COLUMNS,
                                  list(sweep.FAMILIES.values()), False, plt)
    assert sorted(os.path.basename(p) for p in written) == sorted(["sweep.csv"] + PLOTS)
    assert sorted(os.listdir(tmp_path)) == sorted(["sweep.csv"] + PLOTS)  # no temporary left
    for plot in PLOTS:
        check_png(tmp_path / plot)


# ---- --plot-only: the plots again from a CSV, without running anything -------------------------

def test_plot_only_redraws_the_plots_from_a_csv(tmp_path):
    out_dir = tmp_path / "plots"
    # No binary is needed: --activemm names one that does not exist.
    r = run_sweep("--plot-only", DOCS_CSV, "--out", str(out_dir),
                  "--activemm", str(tmp_path / "nope"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout == (f"sweep: redrew {', '.join(PLOTS)} in {out_dir} from {DOCS_CSV}\n")
    assert sorted(os.listdir(out_dir)) == sorted(PLOTS)  # no CSV written, no temporary left
    for plot in PLOTS:
        check_png(out_dir / plot)


def test_plot_only_writes_beside_the_csv_and_leaves_it_alone(tmp_path):
    csv_path = tmp_path / "sweep.csv"
    shutil.copy(DOCS_CSV, csv_path)
    before = csv_path.read_bytes()
    r = run_sweep("--plot-only", str(csv_path), "--family", sweep_gen.IPIS_VS_CPUS)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["ipis_vs_cpus.png", "sweep.csv"]
    assert csv_path.read_bytes() == before
    check_png(tmp_path / "ipis_vs_cpus.png")


def test_plot_only_of_a_quick_sweep_reads_out_dir_and_uses_the_quick_sizes(fake_bin, tmp_path):
    out_dir = tmp_path / "out"
    r = run_sweep("--quick", "--out", str(out_dir), "--activemm", fake_bin)
    assert r.returncode == 0, r.stderr
    for plot in PLOTS:
        (out_dir / plot).unlink()
    r = run_sweep("--plot-only", "--out", str(out_dir))  # CSV: OUT/sweep.csv
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith(f"from {out_dir / 'sweep.csv'} (--quick sizes)")
    assert sorted(os.listdir(out_dir)) == sorted(PLOTS + ["sweep.csv"])


def test_plot_only_names_a_missing_or_foreign_csv(tmp_path):
    r = run_sweep("--plot-only", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "cannot read" in r.stderr and "none.csv" in r.stderr
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    r = run_sweep("--plot-only", str(other), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "is not a sweep.csv" in r.stderr
    assert not (tmp_path / "o").exists()


# ---- the plots can be read on their own ---------------------------------------------------------

def test_coincidence():
    xs = [1, 2, 3]
    assert sweep.coincidence(xs, [1, 2, 3], [1, 2, 3]).kind == "identical"
    c = sweep.coincidence(xs, [100, 200, 300], [100, 198, 300])
    assert (c.kind, c.equal_at, c.max_diff, c.max_at) == ("close", [1, 3], 2, 2)
    c = sweep.coincidence(xs, [0, 50, 100], [0, 80, 160])
    assert (c.kind, c.equal_at) == ("touch", [1])
    assert sweep.coincidence(xs, [1, 2, 3], [5, 6, 7]).kind is None
    assert sweep.coincidence(xs, [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]).kind == "identical"


def _figures(rows):
    plt = sweep.import_pyplot()
    return plt, {fam.plot: sweep.PLOTTERS[fam.name](plt, rows, False)
                 for fam in sweep.FAMILIES.values()}


@pytest.fixture(scope="module")
def docs_figures():
    """The figures of docs/sweep/, drawn from docs/sweep/sweep.csv."""
    rows, _ = sweep.read_csv(DOCS_CSV)
    plt, figs = _figures(rows)
    for fig in figs.values():
        fig.canvas.draw()  # lays the figure out: the text positions are final
    yield figs
    for fig in figs.values():
        plt.close(fig)


def _texts(fig):
    import matplotlib.text
    return [t for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip()]


def _words(fig):
    """All the text of a figure, with the line breaks of the wrapped notes undone."""
    return " ".join(" ".join(t.get_text().split()) for t in _texts(fig))


def _panels(fig):
    return [ax for ax in fig.axes if ax.axison]


@pytest.mark.parametrize("plot", PLOTS)
def test_every_panel_has_a_title_axis_labels_and_a_legend(docs_figures, plot):
    fig = docs_figures[plot]
    assert fig._suptitle is not None and fig._suptitle.get_text()
    assert len(_panels(fig)) >= 2
    for ax in _panels(fig):
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        legend = ax.get_legend()
        assert legend is not None and legend.get_texts(), ax.get_title()


@pytest.mark.parametrize("plot", PLOTS)
def test_no_rotated_tiny_or_grey_text(docs_figures, plot):
    import matplotlib.colors
    fig = docs_figures[plot]
    ylabels = {id(ax.yaxis.label) for ax in fig.axes}
    for text in _texts(fig):
        assert text.get_fontsize() >= 8, text.get_text()
        if id(text) in ylabels:
            continue  # the y axis labels read upwards, as usual
        assert text.get_rotation() == 0, text.get_text()
        r, g, b = matplotlib.colors.to_rgb(text.get_color())
        assert not (r == g == b and r > 0.3), text.get_text()


@pytest.mark.parametrize("plot", PLOTS)
def test_notes_do_not_cover_the_panels(docs_figures, plot):
    fig = docs_figures[plot]
    renderer = fig.canvas.get_renderer()
    notes = [t for ax in fig.axes if not ax.axison for t in ax.texts]
    assert notes
    for note in notes:
        box = note.get_bbox_patch().get_window_extent(renderer)
        for ax in _panels(fig):
            assert not box.overlaps(ax.get_window_extent(renderer)), note.get_text()


def test_the_notes_say_what_the_lines_hide(docs_figures):
    ipis = _words(docs_figures["ipis_vs_cpus.png"])
    assert ("Lazy TLB on and off nearly coincide: at most 4 IPIs apart (299 on, 295 off at "
            "15 CPUs)") in ipis
    assert "Every run makes 70 shootdowns" in ipis
    assert "Lazy TLB off: 0 at every point" in ipis
    processes = _words(docs_figures["processes_per_cpu.png"])
    assert "init_mm at every switch to the kworker or idle (768 init_mm loads per run)" in processes
    assert processes.count("No CR3 load keeps the TLB: 0 at every point") == 2  # PCID off
    assert "only 4 CR3 loads per run" in processes
    kthread = _words(docs_figures["kthread_share.png"])
    assert "Lazy TLB on and off are equal at 0 % (1600 CR3 writes)" in kthread


def test_the_coincidence_notes_follow_the_data():
    rows, _ = sweep.read_csv(DOCS_CSV)
    on = {r["value"]: r for r in rows
          if r["family"] == sweep_gen.IPIS_VS_CPUS and r["lazy"] == "on"}
    for row in rows:
        if row["family"] == sweep_gen.IPIS_VS_CPUS and row["lazy"] == "off":
            row["ipis_sent"] = on[row["value"]]["ipis_sent"]
    plt, figs = _figures(rows)
    assert "Lazy TLB on and off give the same IPIs at every point" in _words(
        figs["ipis_vs_cpus.png"])
    for row in rows:
        if row["family"] == sweep_gen.IPIS_VS_CPUS and row["lazy"] == "off":
            row["ipis_sent"] = 2 * row["ipis_sent"] + 5
    plt, figs2 = _figures(rows)
    assert "coincide" not in _words(figs2["ipis_vs_cpus.png"])
    for fig in list(figs.values()) + list(figs2.values()):
        plt.close(fig)


# ---- on the real tool -------------------------------------------------------------------------

def needs_tool():
    binary = os.environ.get("ACTIVEMM_BIN")
    if not binary:
        pytest.skip("ACTIVEMM_BIN is not set (ctest's `sweep` test sets it)")
    return binary


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory, kvm):
    binary = needs_tool()
    out_dir = tmp_path_factory.mktemp("sweep")
    r = run_sweep("--quick", "--out", str(out_dir), env={"ACTIVEMM_BIN": binary})
    assert r.returncode == 0, (r.stdout, r.stderr)
    return out_dir, r


def test_quick_sweep_runs_every_point(quick_sweep):
    out_dir, r = quick_sweep
    assert r.stderr == ""
    assert len(r.stdout.splitlines()) == 1
    assert r.stdout.startswith(f"sweep: {len(quick_runs())} runs of 9 scenarios in ")
    assert sorted(os.listdir(out_dir)) == sorted(PLOTS + ["sweep.csv"])


def test_quick_sweep_csv(quick_sweep):
    out_dir, _ = quick_sweep
    columns, rows = read_csv(out_dir / "sweep.csv")
    assert columns[:len(EXPECTED_COLUMNS)] == EXPECTED_COLUMNS
    assert [(r["family"], int(r["value"]), r["lazy"], r["pcid"]) for r in rows] == quick_runs()
    for row in rows:
        counters = {name: int(row[name]) for name in COUNTER_NAMES}
        assert all(v >= 0 for v in counters.values())
        assert int(row["asids"]) == 6 and int(row["steps"]) > 0
        assert counters["cr3_writes"] == (counters["cr3_writes_flush"]
                                          + counters["cr3_writes_noflush"])
        assert counters["context_switches"] == sum(counters[k] for k in (
            "switch_user_to_kernel", "switch_kernel_to_kernel", "switch_kernel_to_user",
            "switch_user_to_user"))
        if row["pcid"] == "off":
            assert counters["cr3_writes_noflush"] == 0
        if row["lazy"] == "off":
            assert counters["lazy_entries"] == counters["leave_mm"] == 0
    by = {(r["family"], int(r["value"]), r["lazy"], r["pcid"]): r for r in rows}

    def get(family, value, lazy, field, pcid="modeled"):
        return int(by[(family, value, lazy, pcid)][field])

    ks = sweep_gen.KTHREAD_SHARE
    assert get(ks, 0, "on", "cr3_writes") == get(ks, 0, "off", "cr3_writes")
    assert get(ks, 90, "on", "cr3_writes") < get(ks, 90, "off", "cr3_writes")
    ipis = sweep_gen.IPIS_VS_CPUS
    assert get(ipis, 1, "on", "ipis_sent") == get(ipis, 1, "off", "ipis_sent") == 0
    assert get(ipis, 4, "on", "ipis_sent") > get(ipis, 2, "on", "ipis_sent") > 0


@pytest.mark.parametrize("plot", PLOTS)
def test_quick_sweep_plots_are_pngs(quick_sweep, plot):
    out_dir, _ = quick_sweep
    check_png(out_dir / plot)


# The largest default-sweep scenarios of each family, and the smallest: the quick sweep runs
# every quick point; the default points differ from them only in length, and all of them are
# replayed by the validator in test_sweep_gen.py.
@pytest.mark.parametrize("family, value", [
    (sweep_gen.KTHREAD_SHARE, 0), (sweep_gen.KTHREAD_SHARE, 90),
    (sweep_gen.PROCESSES_PER_CPU, 1), (sweep_gen.PROCESSES_PER_CPU, 8),
    (sweep_gen.IPIS_VS_CPUS, 1), (sweep_gen.IPIS_VS_CPUS, 16),
])
def test_default_scenarios_are_deterministic_and_run(family, value, tmp_path, kvm):
    binary = needs_tool()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for path in (first, second):
        out = subprocess.run([PYTHON, GEN, family, str(value), str(path)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
    assert first.read_bytes() == second.read_bytes()
    report = tmp_path / "report.json"
    out = subprocess.run([binary, "run", str(first), "--json", str(report), "--pcid=modeled"],
                         capture_output=True, text=True, timeout=240, check=False,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["ok"] is True and doc["totals"]["context_switches"] > 0
