"""--timeline: Chrome/Perfetto trace-event files of run, compare and replay.

Each file must load as JSON, name its processes, and have exactly one track (thread) per CPU in
every process, with the tasks as slices, CR3 loads as instants and flush IPIs as flow arrows.
"""

import collections
import json
import os

import pytest

from test_cli import EXIT_OK, kvm, run

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "..", "scripts")
SHARED_TRACES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "traces")


def load(path):
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    assert events, "the timeline is empty"
    names = {e["pid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "process_name"}
    tracks = collections.defaultdict(set)
    for e in events:
        if e["ph"] == "M" and e["name"] == "thread_name":
            tracks[e["pid"]].add(e["tid"])
    return events, names, tracks


def by_kind(events, pid):
    kinds = collections.Counter(e["ph"] for e in events if e["pid"] == pid)
    return kinds


def test_run_timeline_has_a_track_per_cpu(tmp_path, kvm):
    out = tmp_path / "t.json"
    r = run("run", os.path.join(SCRIPTS, "scenarios", "mix_4cpu.py"), f"--timeline={out}")
    assert r.returncode == EXIT_OK, r.stderr
    events, names, tracks = load(out)
    assert list(names.values()) == ["activemm: lazy on, PCID modeled"] or \
        list(names.values()) == ["activemm: lazy on, PCID hardware"]
    assert tracks == {1: {0, 1, 2, 3}}
    kinds = by_kind(events, 1)
    assert kinds["X"] >= 20  # a slice per task run (mix_4cpu switches 20 times)
    cr3 = [e for e in events if e["ph"] == "i" and e["name"].startswith("CR3 load")]
    # Every CR3 write of the run, on the CPU that made it: mix_4cpu's 16 with lazy TLB on, one
    # of them a leave_mm another CPU's flush IPI caused.
    assert len(cr3) == 16
    assert len([e for e in cr3 if "leave_mm" in e["name"]]) == 1
    assert kinds["s"] == kinds["f"] > 0  # flush IPIs drawn as arrows
    for e in events:
        if e["ph"] == "X":
            assert e["dur"] > 0 and e["ts"] >= 0
    lazy = [e for e in events if e["ph"] == "X" and e["args"]["lazy"]]
    assert lazy and all("(lazy on " in e["name"] for e in lazy)


def test_compare_timeline_has_a_process_per_mode(tmp_path, kvm):
    out = tmp_path / "t.json"
    r = run("compare", f"--timeline={out}")
    assert r.returncode == EXIT_OK, r.stderr
    events, names, tracks = load(out)
    assert len(names) in (6, 9)  # 3 lazy modes x PCID modeled, off (and hardware)
    assert all(t == {0, 1} for t in tracks.values())
    assert "activemm: lazy shootdown, PCID off" in names.values()


def test_replay_timeline_puts_the_kernel_beside_the_emulator(tmp_path, kvm):
    trace = os.path.join(SHARED_TRACES, "make")
    if not os.path.isdir(trace):
        pytest.skip(f"{trace} is not here")
    out = tmp_path / "t.json"
    r = run("replay", trace, f"--timeline={out}")
    assert r.returncode == EXIT_OK, r.stderr
    events, names, tracks = load(out)
    assert sorted(names.values()) == ["Linux (the trace): 6.18.44-fc-v669",
                                      "activemm replay: lazy on, PCID modeled"] or \
        sorted(names.values()) == ["Linux (the trace): 6.18.44-fc-v669",
                                   "activemm replay: lazy on, PCID hardware"]
    assert tracks == {1: {0, 1}, 2: {0, 1}}
    # The kernel's CR3 loads (its 149 reason-0 lines) and the emulator's, on one clock.
    kernel_loads = [e for e in events if e["pid"] == 2 and e["name"].startswith("CR3 load")]
    assert len(kernel_loads) == 149
    emulator_loads = [e for e in events if e["pid"] == 1 and e["name"].startswith("CR3 load")]
    assert emulator_loads
    span = lambda pid: max(e["ts"] for e in events if e["pid"] == pid and e["ph"] != "M")
    assert abs(span(1) - span(2)) < 1000  # microseconds: the same trace clock


def test_timeline_is_not_written_when_the_run_cannot_start(tmp_path):
    out = tmp_path / "t.json"
    r = run("run", str(tmp_path / "missing.json"), f"--timeline={out}")
    assert r.returncode != EXIT_OK
    assert not out.exists()
