"""`activemm capture`: its command line, its errors, and real and fake tracefs captures.

Run by CTest (`cli`) with ACTIVEMM_BIN and ACTIVEMM_WORKLOADS set, through Debian's
/usr/bin/python3. Captures need root; where they cannot run, the tests say why they skip.
tracefs is one per machine: the tests that use the real one run one after the other (pytest's
default), and activemm capture itself waits for any other capture to finish.
"""

import os
import pathlib
import re

import pytest

from pytest_helpers import (
    EXIT_HOST_ERROR, EXIT_OK, EXIT_USAGE, TRACEFS, as_nobody, needs_capture, needs_root, run,
    workload_path)

EVENTS = ["sched/sched_switch", "sched/sched_process_fork", "sched/sched_process_exec",
          "sched/sched_process_exit", "tlb/tlb_flush"]
OUTPUT_FILES = ["kernel.txt", "kthreads.txt", "machine.txt", "tgids.txt", "trace.txt"]


def read(path):
    return pathlib.Path(path).read_text().strip()


# --- the command line -----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ([], "capture: no OUT_DIR given"),
    (["--", "/bin/true"], "capture: no OUT_DIR given"),
    (["OUT"], "capture: no command given after --"),
    (["OUT", "--"], "capture: no command given after --"),
    (["OUT", "extra", "--", "/bin/true"], "capture: unexpected argument 'extra'"),
    (["OUT", "--buffer-kb=0", "--", "/bin/true"], "--buffer-kb=0: expected KiB per CPU"),
])
def test_usage_errors_name_the_problem(tmp_path, args, message):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    r = run("capture", *args)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.splitlines()[0].startswith("activemm: " + message), r.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_capture():
    r = run("--help")
    assert "capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]" in r.stdout + r.stderr


def test_a_non_empty_out_dir_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me\n")
    r = run("capture", str(out), "--", "/bin/true")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert f"activemm capture: {out} already exists and is not empty" in r.stderr
    assert sorted(os.listdir(out)) == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "keep me\n"


def test_an_out_dir_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "out"
    out.write_text("")
    r = run("capture", str(out), "--", "/bin/true")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert f"{out} already exists and is not a directory" in r.stderr


def test_an_unknown_command_is_named(tmp_path):
    r = run("capture", str(tmp_path / "out"), "--", "no-such-command-xyz", "arg")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert "activemm capture: no-such-command-xyz: command not found" in r.stderr
    assert os.listdir(tmp_path) == []


def test_without_root_it_says_to_use_sudo(tmp_path):
    if os.geteuid() != 0:
        r = run("capture", str(tmp_path / "out"), "--", "/bin/true")
    else:
        # Drop to nobody (as tests/cli/test_cli.py does), with the binary and OUT_DIR where
        # nobody can reach them.
        with as_nobody("activemm-capture-", folder_mode=0o777) as (public, run_as_nobody):
            r = run_as_nobody("capture", f"{public}/out", "--", "/bin/true")
            assert not os.path.exists(f"{public}/out")
    assert r.returncode == EXIT_HOST_ERROR, r.stderr
    assert "activemm capture: needs root to write tracefs (run it with sudo)" in r.stderr


# --- fake tracefs folders: deterministic, and the real one is left alone --------------------

def fake_tracefs(root, events=EVENTS):
    """A folder with tracefs's control files as a fresh tracefs has them."""
    t = root / "tracefs"
    (t / "options").mkdir(parents=True)
    (t / "trace").write_text("")
    (t / "tracing_on").write_text("1\n")
    (t / "buffer_size_kb").write_text("7 (expanded: 1408)\n")
    (t / "options" / "record-tgid").write_text("0\n")
    for e in events:
        (t / "events" / e).mkdir(parents=True)
        (t / "events" / e / "enable").write_text("0\n")
    return t


def assert_restored(t, events=EVENTS):
    assert read(t / "tracing_on") == "1"
    assert read(t / "buffer_size_kb") == "1408"  # what "7 (expanded: 1408)" stood for
    assert read(t / "options" / "record-tgid") == "0"
    for e in events:
        assert read(t / "events" / e / "enable") == "0", e


def test_tracefs_that_cannot_be_mounted_is_named(tmp_path):
    needs_root()
    # A regular file: it has no `trace`, and nothing can be mounted on it (a directory could
    # really get a tracefs mounted on it).
    not_a_dir = tmp_path / "not-a-dir"
    not_a_dir.write_text("")
    r = run("capture", str(tmp_path / "out"), f"--tracefs={not_a_dir}", "--", "/bin/true")
    assert r.returncode == EXIT_HOST_ERROR, r.stderr
    assert f"activemm capture: {not_a_dir}/trace does not exist and tracefs cannot be mounted " \
        f"on {not_a_dir}" in r.stderr
    assert f"mount -t tracefs nodev {not_a_dir}" in r.stderr
    assert os.listdir(tmp_path) == ["not-a-dir"]


def test_a_missing_event_is_named_and_tracefs_restored(tmp_path):
    needs_root()
    t = fake_tracefs(tmp_path, EVENTS[:-1])  # no tlb/tlb_flush
    r = run("capture", str(tmp_path / "out"), f"--tracefs={t}", "--", "/bin/true")
    assert r.returncode == EXIT_HOST_ERROR, r.stderr
    assert f"{t}/events/tlb/tlb_flush/enable does not exist: this kernel cannot trace " \
        "tlb/tlb_flush" in r.stderr
    assert_restored(t, EVENTS[:-1])
    assert sorted(os.listdir(tmp_path)) == ["tracefs"]  # no OUT_DIR, no temporary folder


FAKE_TRACE = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 3/10   #P:2
#
CPU:1 [LOST 7 EVENTS]
            bash-10      (     10) [001] .....   1.000001: sched_process_exec: filename=/usr/local/bin/my tool pid=10 old_pid=10
            bash-10      (     10) [001] d..2.   1.000002: sched_switch: prev_comm=bash prev_pid=10 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
          <idle>-0       (-------) [001] d..2.   1.000003: tlb_flush: pages:-1 reason:flush on task switch (0)
"""


def test_fake_capture_keeps_the_trace_of_a_failing_command(tmp_path):
    needs_root()
    t = fake_tracefs(tmp_path)
    fixture = tmp_path / "fixture.txt"
    fixture.write_text(FAKE_TRACE)
    seen = tmp_path / "seen"
    # The command plays the kernel: it fills `trace` and saved_tgids, notes what it saw
    # switched on, and fails. Its arguments after -- must reach it as they were, flags or not.
    script = (f'cat {fixture} > {t}/trace; printf "11 10\\n" > {t}/saved_tgids; '
              f'cat {t}/tracing_on {t}/options/record-tgid {t}/buffer_size_kb '
              f'{t}/events/tlb/tlb_flush/enable > {seen}; printf "%s\\n" "$@" >> {seen}; exit 3')
    out = tmp_path / "out"
    out.mkdir()  # an empty OUT_DIR is fine
    r = run("capture", str(out), f"--tracefs={t}", "--buffer-kb", "64", "--",
            "/bin/sh", "-c", script, "sh", "--lazy-tlb=on", "--buffer-kb=5", "--", "x y")
    assert r.returncode == EXIT_OK, r.stderr
    assert "/bin/sh exited with status 3 (the trace is kept)" in r.stderr
    assert "warning: 7 of 10 events were overwritten" in r.stderr
    assert "warning: 1 [LOST N EVENTS] markers: 7 events were dropped" in r.stderr
    assert "larger --buffer-kb (now 64)" in r.stderr
    assert read(seen).splitlines() == ["1", "1", "64", "1",
                                       "--lazy-tlb=on", "--buffer-kb=5", "--", "x y"]
    assert_restored(t)
    assert sorted(os.listdir(out)) == OUTPUT_FILES
    trace = (out / "trace.txt").read_text()
    assert "filename=my tool pid=10 old_pid=10" in trace
    assert "/usr/local" not in trace
    assert trace == FAKE_TRACE.replace("/usr/local/bin/my tool", "my tool")
    assert (out / "tgids.txt").read_text() == "11 10\n"
    assert "2" in read(out / "kthreads.txt").split()
    release, cpus = read(out / "kernel.txt").splitlines()
    assert release == os.uname().release
    assert int(cpus) == os.sysconf("SC_NPROCESSORS_ONLN")
    assert sorted(os.listdir(tmp_path)) == ["fixture.txt", "out", "seen", "tracefs"]


def test_a_command_that_cannot_run_leaves_nothing(tmp_path):
    needs_root()
    t = fake_tracefs(tmp_path)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    r = run("capture", str(tmp_path / "out"), f"--tracefs={t}", "--", str(script))
    assert r.returncode == EXIT_USAGE, r.stderr
    assert f"{script}: not an executable file" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["not-executable", "tracefs"]


# --- the real tracefs ------------------------------------------------------------------------

def tracefs_state():
    """What a capture changes, as it should read again afterwards."""
    def norm(text):  # "7 (expanded: 1408)" is restored as 1408
        return text.split("(expanded: ")[1].rstrip(")") if "(expanded: " in text else text
    files = ["tracing_on", "options/record-tgid", "buffer_size_kb"] + \
        [f"events/{e}/enable" for e in EVENTS]
    return {f: norm(read(f"{TRACEFS}/{f}")) for f in files}


def test_real_capture_of_wl_forkexec(tmp_path):
    mounted = needs_capture()
    program = workload_path("wl_forkexec")
    before = tracefs_state() if mounted else None

    out = tmp_path / "captures" / "forkexec"
    r = run("capture", str(out), "--", program)
    assert r.returncode == EXIT_OK, r.stderr
    assert "wl_forkexec exited with status 0" in r.stderr

    after = tracefs_state()
    if before is not None:
        assert after == before
    else:
        assert all(after[f"events/{e}/enable"] == "0" for e in EVENTS), after
    assert sorted(os.listdir(out)) == OUTPUT_FILES
    assert os.listdir(tmp_path / "captures") == ["forkexec"]  # no temporary folder left

    # The machine's facts the replay needs (docs/replay.md), as /proc says.
    machine = dict(line.split(": ", 1) for line in (out / "machine.txt").read_text().splitlines()
                   if line and not line.startswith("#"))
    flags = next(line.split(":", 1)[1].split() for line in open("/proc/cpuinfo")
                 if line.startswith("flags"))
    cmdline = open("/proc/cmdline").read().split()
    assert machine["release"] == os.uname().release
    assert machine["cpus"] == str(os.cpu_count())
    assert machine["cpu_pcid"] == ("yes" if "pcid" in flags else "no")
    assert machine["boot_nopcid"] == ("yes" if "nopcid" in cmdline else "no")
    uses = "pcid" in flags and "pge" in flags and "nopcid" not in cmdline
    assert machine["kernel_pcid"] == ("yes" if uses else "no"), machine
    assert machine["lazy_tlb"] == "refcount", machine  # x86

    lines = (out / "trace.txt").read_text().splitlines()
    assert any(line.startswith("# entries-in-buffer/entries-written:") and "#P:" in line
               for line in lines)
    assert sum(": sched_switch: " in line for line in lines) > 0
    execs = [line for line in lines if ": sched_process_exec: " in line]
    # wl_forkexec itself, then /bin/true 20 times by fork+exec and 20 times by posix_spawn.
    assert sum("filename=true " in line for line in execs) >= 40, execs
    for line in execs:
        name = line.split("filename=")[1].split(" pid=")[0]
        assert "/" not in name, line
    assert "2" in read(out / "kthreads.txt").split()  # kthreadd
    assert all(len(line.split()) == 2 for line in read(out / "tgids.txt").splitlines())
    release, cpus = read(out / "kernel.txt").splitlines()
    assert release == os.uname().release
    assert int(cpus) == os.sysconf("SC_NPROCESSORS_ONLN")


# --- --with trace-cmd ------------------------------------------------------------------------

def test_with_trace_cmd_not_installed_is_named(tmp_path):
    """Found before root or tracefs matter; one line naming trace-cmd and its package."""
    import subprocess
    from pytest_helpers import BIN
    env = dict(os.environ, PATH=str(tmp_path / "empty"))
    r = subprocess.run([BIN, "capture", str(tmp_path / "out"), "--with", "trace-cmd", "--",
                        "/bin/true"], capture_output=True, text=True, timeout=60, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.splitlines() == [
        "activemm capture: --with trace-cmd: trace-cmd is not installed (not in PATH): install "
        "it (Debian, Ubuntu: apt-get install trace-cmd) or capture without --with trace-cmd"]
    assert os.listdir(tmp_path) == []


def test_with_an_unknown_tool_is_a_usage_error(tmp_path):
    r = run("capture", str(tmp_path / "out"), "--with=perf", "--", "/bin/true")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.startswith("activemm: --with=perf"), r.stderr
    assert os.listdir(tmp_path) == []


def test_real_capture_with_trace_cmd_of_wl_forkexec(tmp_path):
    """trace-cmd records (trace.dat kept), trace.txt is its report -l -N, the rest as tracefs
    captures write it; tracefs is as it was, although trace-cmd itself leaves every event off."""
    import shutil
    mounted = needs_capture()
    if shutil.which("trace-cmd") is None:
        pytest.skip("trace-cmd is not installed (apt-get install trace-cmd)")
    program = workload_path("wl_forkexec")

    def state():
        s = tracefs_state()
        s["set_event"] = read(f"{TRACEFS}/set_event")
        s["current_tracer"] = read(f"{TRACEFS}/current_tracer")
        return s
    before = state() if mounted else None

    out = tmp_path / "captures" / "forkexec"
    r = run("capture", str(out), "--with", "trace-cmd", "--", program, timeout=300)
    assert r.returncode == EXIT_OK, r.stderr
    assert "wl_forkexec exited with status 0" in r.stderr
    assert "with trace-cmd" in r.stderr

    if before is not None:
        assert state() == before
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES + ["trace.dat"])
    assert os.listdir(tmp_path / "captures") == ["forkexec"]

    lines = (out / "trace.txt").read_text().splitlines()
    assert lines[0] == f"cpus={read(out / 'kernel.txt').splitlines()[1]}", lines[0]
    switches = [line for line in lines if " sched_switch: " in line]
    assert switches and all(" prev_comm=" in line for line in switches[:100])  # -N
    # -l: the flags column after the CPU, e.g. "   1d..2. ": the CR3 loads are there.
    loads = [line for line in lines if "reason:flush on task switch (0)" in line]
    assert any(re.match(r"^.{8}-\d+ +\d+d\.\.2\. ", line) for line in loads), loads[:5]
    execs = [line for line in lines if " sched_process_exec: " in line]
    assert sum("filename=true " in line for line in execs) >= 40, execs
    for line in execs:
        assert "/" not in line.split("filename=")[1].split(" pid=")[0], line
    assert "2" in read(out / "kthreads.txt").split()
    assert all(len(line.split()) == 2 for line in read(out / "tgids.txt").splitlines())
    # What the replay's parser made of it (capture reads its trace.txt back).
    counts = [line for line in r.stderr.splitlines() if " lines: " in line][-1]
    assert " 0 sched_switch" not in counts and " 0 tlb_flush" not in counts, counts


def test_a_failing_trace_cmd_leaves_nothing_and_tracefs_restored(tmp_path):
    """trace-cmd that ends before it records: its error in one line, no folder, tracefs as it
    was (capture had already turned tracing_on off)."""
    import subprocess
    from pytest_helpers import BIN
    mounted = needs_capture()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "trace-cmd").write_text("#!/bin/sh\necho 'trace-cmd: something broke' >&2\nexit 3\n")
    (fake / "trace-cmd").chmod(0o755)
    before = tracefs_state() if mounted else None
    env = dict(os.environ, PATH=f"{fake}:/usr/bin:/bin")
    r = subprocess.run([BIN, "capture", str(tmp_path / "out"), "--with=trace-cmd", "--",
                        "/bin/true"], capture_output=True, text=True, timeout=120, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == EXIT_HOST_ERROR, r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"activemm capture: {fake}/trace-cmd record exited with status 3 before it recorded: "
        "trace-cmd: something broke"), r.stderr
    assert sorted(os.listdir(tmp_path)) == ["bin"]
    if before is not None:
        assert tracefs_state() == before
