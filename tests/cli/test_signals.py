"""Ctrl-C and kill during a run (vmm/kvm/interrupt.h): SIGINT, SIGTERM or SIGHUP stops every vCPU,
joins its thread, writes no output file and exits with 128 + the signal; `capture` passes the
signal on to its command, keeps the trace of what ran and restores tracefs.

The runs are made long on any host with `--inject=slow-steps` (each guest step first spins
about 1 ms), so that the signal, sent as soon as activemm catches it, lands before the run
could have ended, however fast the host.
"""

import os
import signal
import subprocess
import time

import pytest

from pytest_helpers import BIN, EXIT_OK, PYTHON, kvm, needs_capture  # noqa: F401
from test_capture import EVENTS, OUTPUT_FILES, tracefs_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACES = os.path.join(os.path.dirname(ROOT), "shared", "traces")


def catches(pid, sig):
    """Whether process `pid` has a handler for `sig` installed (/proc/PID/status SigCgt)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (FileNotFoundError, StopIteration):
        return False
    return bool(caught & (1 << (sig - 1)))


def start(argv, cwd):
    """Starts activemm; returns once it catches SIGINT and SIGTERM (vmm/kvm/interrupt.h), which it
    sets up before it prepares or runs anything: a signal from then on stops the run, whether
    it lands while the scenario is prepared or while the guest runs (the runner looks at once)."""
    p = subprocess.Popen([BIN, *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (catches(p.pid, signal.SIGINT) and catches(p.pid, signal.SIGTERM)):
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.01)
    return p


def finish(p):
    """(exit status, stderr) of a process started by start()."""
    try:
        err = p.stderr.read()
        return p.wait(timeout=300), err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def interrupt(argv, sig, cwd):
    p = start(argv, cwd)
    p.send_signal(sig)
    return finish(p)


@pytest.fixture(scope="module")
def long_scenario(tmp_path_factory):
    """A scenario of 8,000 steps (stress_gen's): with slow-steps, 8 s or more on any host."""
    path = tmp_path_factory.mktemp("long") / "long.json"
    with open(path, "w") as f:
        subprocess.run([PYTHON, os.path.join(ROOT, "scripts", "stress_gen.py"), "--cpus", "2",
                        "--seed", "3", "--steps", "8000"], stdout=f, check=True)
    return str(path)


def commands(scenario):
    return {
        "run": ["run", scenario],
        "compare": ["compare", scenario],
        "stress": ["stress", "--cpus", "2", "--steps", "8000"],
        "replay": ["replay", os.path.join(TRACES, "make")],
    }


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", ["run", "compare", "stress", "replay"])
def test_a_signal_stops_the_run_and_writes_nothing(command, sig, long_scenario, tmp_path, kvm):
    argv = commands(long_scenario)[command] + [
        "--inject=slow-steps", "--json=out.json", "--timeline=timeline.json"]
    status, err = interrupt(argv, sig, tmp_path)
    name = signal.Signals(sig).name
    assert status == 128 + sig, err
    # One clear message; compare starts no further run after the interrupted one.
    assert err.count(f"activemm: interrupted by {name}: the run was stopped; "
                     "no output written") == 1, err
    assert "Traceback" not in err and "watchdog" not in err, err
    # Nothing written, not even a temporary file.
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


def test_a_second_signal_kills_at_once(long_scenario, tmp_path, kvm):
    # The first signal asks for a clean stop; a second one is obeyed at once (a user who
    # presses Ctrl-C twice wants out). Two different signals, so that they cannot merge into
    # one while pending; which one a thread takes first is the kernel's choice, so the process
    # dies of either, not stopping cleanly (that would be 128 + the signal).
    p = start(["run", long_scenario, "--inject=slow-steps"], tmp_path)
    os.kill(p.pid, signal.SIGINT)
    os.kill(p.pid, signal.SIGTERM)
    status, err = finish(p)
    assert status in (-signal.SIGINT, -signal.SIGTERM), err


def test_capture_passes_the_signal_to_its_command_and_restores_tracefs(tmp_path):
    # Ctrl-C during a capture ends the command being traced, not activemm: the trace of what
    # ran is written whole and tracefs is left as it was.
    mounted = needs_capture()
    before = tracefs_state() if mounted else None
    out = tmp_path / "out"
    p = subprocess.Popen([BIN, "capture", str(out), "--", "sleep", "600"], cwd=tmp_path,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    # Once it says it traces (the command may not be started yet: a signal then is held back
    # for it, not lost).
    for line in p.stderr:
        if "while running: sleep 600" in line:
            p.send_signal(signal.SIGINT)
            break
    status, err = finish(p)
    assert status == EXIT_OK, err
    assert "sleep was killed by signal 2" in err and "(the trace is kept)" in err, err
    assert sorted(os.listdir(out)) == OUTPUT_FILES
    after = tracefs_state()
    if before is not None:
        assert after == before
    else:
        assert all(after[f"events/{e}/enable"] == "0" for e in EVENTS), after
