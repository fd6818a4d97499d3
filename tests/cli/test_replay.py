"""`activemm replay DIR`: its errors, and the files it writes (--decisions, --json, --plan) and
what --explain prints, on the small `make` trace of ../shared/traces.

Run by CTest (`cli`) with ACTIVEMM_BIN set, through Debian's /usr/bin/python3. The runs that boot
a guest skip where /dev/kvm is unusable, unless ACTIVEMM_REQUIRE_KVM=1.
"""

import csv
import io
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from test_cli import check_host, kvm, run

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAKE_TRACE = ROOT.parent / "shared" / "traces" / "make"

from test_cli import EXIT_OK, EXIT_USAGE

DECISIONS_HEADER = "line,cpu,prev_pid,next_pid,cr3_load,flush"
SCORE_FIELDS = ["switches", "placed", "unplaced", "scored", "truth_unknown", "real_loads",
                "true_positives", "false_positives", "false_negatives", "true_negatives",
                "precision", "recall", "flush_right", "flush_wrong", "flush_accuracy"]


def needs_make_trace():
    if not (MAKE_TRACE / "trace.txt").is_file():
        pytest.skip(f"{MAKE_TRACE} is not there")


def error_lines(stderr):
    """The lines of an error report that are not the hint to the help."""
    return [l for l in stderr.splitlines() if l and not l.startswith("Run 'activemm help")]


def sched_switch_lines(trace_text):
    """1-based numbers of the sched_switch lines (comments start in the first column)."""
    return [i for i, l in enumerate(trace_text.splitlines(), 1)
            if not l.startswith("#") and ": sched_switch: " in l]


def output_flags(tmp_path):
    outs = {"decisions": tmp_path / "d.csv", "json": tmp_path / "r.json",
            "plan": tmp_path / "p.csv"}
    return outs, [f"--{k}={v}" for k, v in outs.items()]


# --- errors: exit 2, one line naming what is wrong, no output files --------------------------

HEADER = "# tracer: nop\n#\n# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}\n#\n"
SWITCH = ("          <idle>-0       (-------) [000] d..2.   714.939436: sched_switch: "
          "prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=bash "
          "next_pid=6265 next_prio=120\n")


def bad_folder(tmp_path, kind):
    """A trace folder that `replay` must refuse, and the text its message must contain."""
    d = tmp_path / "trace"
    if kind == "missing":
        return d, f"{d}: no such trace folder"
    if kind == "a file":
        d.write_text("")
        return d, f"{d}: not a folder"
    d.mkdir()
    if kind == "no trace.txt":
        (d / "kernel.txt").write_text("6.18\n2\n")
        return d, f"{d}/trace.txt: no such file"
    if kind == "no events":
        (d / "trace.txt").write_text(HEADER.format(n=0, cpus=2) + "garbage line\n")
        return d, f"{d}/trace.txt: no events"
    if kind == "65 CPUs":
        (d / "trace.txt").write_text(HEADER.format(n=1, cpus=65) + SWITCH)
        return d, f"{d}/trace.txt: the trace has 65 CPUs (#P:65); activemm emulates at most 64"
    raise AssertionError(kind)


def test_no_folder_is_a_usage_error():
    r = run("replay")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert error_lines(r.stderr) == [
        "activemm: replay: no trace folder given (activemm replay DIR)"], r.stderr
    assert r.stderr.splitlines()[-1] == "Run 'activemm help replay' for its usage and flags."
    assert r.stdout == ""


@pytest.mark.parametrize("kind", ["missing", "a file", "no trace.txt", "no events", "65 CPUs"])
def test_a_bad_folder_is_named_and_nothing_is_written(tmp_path, kind):
    folder, message = bad_folder(tmp_path, kind)
    outs, flags = output_flags(tmp_path)
    r = run("replay", str(folder), *flags)
    assert r.returncode == EXIT_USAGE, r.stderr
    lines = error_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("activemm: " + message), r.stderr
    # The folder's fault, not the command line's: no hint to the help.
    assert r.stderr.splitlines() == lines, r.stderr
    assert r.stdout == ""
    for path in outs.values():
        assert not path.exists(), path
    # No temporary files either (the outputs are written atomically).
    assert sorted(p.name for p in tmp_path.iterdir()) == (["trace"] if kind != "missing" else [])


def test_an_unwritable_output_is_named(tmp_path, kvm):
    needs_make_trace()
    out = tmp_path / "no-such-dir" / "d.csv"
    r = run("replay", str(MAKE_TRACE), f"--decisions={out}")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert str(out) in r.stderr
    assert not out.exists()


# --- a real trace: the files it writes ---------------------------------------------------------

@pytest.fixture(scope="module")
def make_replay(tmp_path_factory, kvm):
    """`activemm replay` of the make trace with every output file, run once for the module."""
    needs_make_trace()
    tmp = tmp_path_factory.mktemp("replay")
    outs, flags = output_flags(tmp)
    r = run("replay", str(MAKE_TRACE), *flags)
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    return r, outs


def test_the_summary_names_the_trace_and_the_score(make_replay):
    r, _ = make_replay
    assert r.stdout.startswith(f"replay of {MAKE_TRACE} (")
    assert "violations: 0" in r.stdout
    assert re.search(r"^CR3 loads: precision 1\.0000, recall 1\.0000 \(84 right, 0 extra, "
                     r"0 missed\); flush accuracy 1\.0000 \(84 of 84\)$", r.stdout, re.M), r.stdout
    assert "no disagreements" not in r.stdout  # only with --explain


def test_a_folder_without_machine_txt_states_what_it_assumed(make_replay):
    r, outs = make_replay
    line = next(l for l in r.stdout.splitlines() if l.startswith("traced machine: "))
    assert re.fullmatch(r"traced machine: PCID assumed used \(no machine\.txt says otherwise; "
                        r"--pcid=off replays a kernel without it\), replayed (modeled|hardware); "
                        r"lazy TLB on \(assumed: x86 refcounts\)", line), line
    assert json.loads(outs["json"].read_text())["traced_machine"] == line[len("traced machine: "):]


def test_machine_txt_of_a_kernel_without_pcid_replays_with_pcid_off(tmp_path, kvm):
    needs_make_trace()
    trace = tmp_path / "make"
    shutil.copytree(MAKE_TRACE, trace)
    (trace / "machine.txt").write_text(
        "release: 6.18.44\ncpus: 2\ncpu_pcid: no\ncpu_invpcid: no\nboot_nopcid: no\n"
        "boot_noinvpcid: no\nkernel_pcid: no\nlazy_tlb: refcount\n")
    out = tmp_path / "r.json"
    r = run("replay", str(trace), f"--json={out}")
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert ("traced machine: PCID not used (machine.txt: cpu_pcid no, boot_nopcid no), replayed "
            "off; lazy TLB on (machine.txt)\n") in r.stdout
    assert json.loads(out.read_text())["mode"]["pcid"] == "off"
    # A flag still wins over the file.
    r = run("replay", str(trace), f"--json={out}", "--pcid=modeled")
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert "traced machine: PCID modeled (--pcid); lazy TLB on (machine.txt)\n" in r.stdout


def test_decisions_have_a_row_per_sched_switch_line(make_replay):
    _, outs = make_replay
    text = outs["decisions"].read_text()
    assert text.splitlines()[0] == DECISIONS_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    trace = (MAKE_TRACE / "trace.txt").read_text()
    switch_lines = sched_switch_lines(trace)
    assert len(switch_lines) == 207
    assert [int(row["line"]) for row in rows] == switch_lines
    lines = trace.splitlines()
    for row in rows:
        line = lines[int(row["line"]) - 1]
        assert f" [{int(row['cpu']):03d}] " in line, (row, line)
        assert f" prev_pid={row['prev_pid']} " in line, (row, line)
        assert f" next_pid={row['next_pid']} " in line, (row, line)
        # Every switch was placed: both decisions are 0 or 1, and a flush needs a load.
        assert row["cr3_load"] in ("0", "1") and row["flush"] in ("0", "1"), row
        assert row["flush"] == "0" or row["cr3_load"] == "1", row
    assert sum(row["cr3_load"] == "1" for row in rows) >= 84


def test_json_has_the_score(make_replay):
    _, outs = make_replay
    report = json.loads(outs["json"].read_text())
    score = report["score"]
    assert sorted(score) == sorted(SCORE_FIELDS)
    assert score["switches"] == 207
    assert score["placed"] == 207
    assert score["unplaced"] == 0
    assert score["real_loads"] == 84
    assert score["true_positives"] == 84
    assert score["false_positives"] == 0
    assert score["false_negatives"] == 0
    assert score["precision"] == 1.0
    assert score["recall"] == 1.0
    assert score["flush_accuracy"] == 1.0
    assert score["scored"] == score["true_positives"] + score["false_positives"] + \
        score["false_negatives"] + score["true_negatives"]
    assert report["trace"] == str(MAKE_TRACE)
    assert report["cpus"] == 2
    assert report["guest"]["violations"] == 0
    assert report["guest"]["steps_done"] == report["guest"]["steps_total"]
    assert report["disagreements"] == {}
    assert report["input"]["skipped_events"] == 0


def test_json_and_summary_name_the_host(make_replay):
    r, outs = make_replay
    report = json.loads(outs["json"].read_text())
    check_host(report, r.stdout, [report["mode"]["pcid"]])
    assert r.stdout.splitlines()[-1] == f"host: {report['host']['summary']}"


def test_plan_has_a_header_and_a_row_per_step(make_replay):
    _, outs = make_replay
    rows = outs["plan"].read_text().splitlines()
    assert rows[0] == "step,line,op,cpu,task,mm,cr3_load,flush"
    report = json.loads(outs["json"].read_text())
    assert len(rows) - 1 == report["guest"]["steps_total"]
    steps = list(csv.DictReader(io.StringIO(outs["plan"].read_text())))
    assert [int(s["step"]) for s in steps] == list(range(len(steps)))
    assert {s["op"] for s in steps} <= {"spawn", "clone_vm", "fork", "kthread", "run", "idle",
                                        "exec", "exit", "flush", "verify"}
    assert steps[-1]["op"] == "verify"


# --- --explain -----------------------------------------------------------------------------------

def test_explain_without_disagreements_says_so(tmp_path, kvm):
    needs_make_trace()
    r = run("replay", str(MAKE_TRACE), "--explain=2")
    assert r.returncode == EXIT_OK, r.stderr
    assert r.stdout.rstrip().endswith("no disagreements")


def test_explain_lists_at_most_n_disagreements(tmp_path, kvm):
    needs_make_trace()
    # The same trace with the kernel's switch CR3 loads relabelled as exec's (d..1.): the
    # kernel now "kept" CR3 at those switches, so each of the emulator's loads disagrees.
    d = tmp_path / "make"
    shutil.copytree(MAKE_TRACE, d)
    (d / "trace.txt").chmod(0o644)
    text = (MAKE_TRACE / "trace.txt").read_text()
    changed = re.sub(r"\] d\.\.2\. (\s*[0-9.]+: tlb_flush: pages:-?\d+ reason:flush on task "
                     r"switch \(0\))", r"] d..1. \1", text)
    assert changed != text
    (d / "trace.txt").write_text(changed)
    r = run("replay", str(d), "--explain", "2")
    assert r.returncode == EXIT_OK, r.stderr  # disagreements are results, not failures
    entries = re.findall(r"^#(\d+) line (\d+), CPU (\d): (.*)$", r.stdout, re.M)
    assert [e[0] for e in entries] == ["1", "2"], r.stdout
    for _, line, _, what in entries:
        assert what.startswith("extra load"), what
        assert f"> {int(line):7d}  " in r.stdout
    assert "no disagreements" not in r.stdout
    assert re.search(r"precision 0\.0000, recall 1\.0000 \(0 right, 84 extra, 0 missed\)",
                     r.stdout), r.stdout
