"""The watchdog watches progress, not hypercalls (vmm/kvm/runner.cc, RunOptions::progress): a long
program on a slow guest completes however long it takes, as long as steps complete; a guest
that stops making progress is stopped after --timeout and reported with where it was.

`--inject=slow-steps` makes every step take about 1 ms more (the guest spins on its TSC), so a
program of thousands of steps with no check in it runs for many times the timeout on any host;
`--inject=stall` stops the guest at its middle step.
"""

import json
import os
import subprocess

import pytest

from pytest_helpers import EXIT_OK, EXIT_WATCHDOG, PYTHON, kvm, run  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 6000  # model steps: with slow-steps 6 s or more, at least 3 times the timeout below
TIMEOUT = "2"


@pytest.fixture(scope="module")
def long_program(tmp_path_factory):
    """A random scenario of STEPS model steps (stress_gen's) with its checks taken out, so the
    guest makes no hypercall between its start and its end."""
    text = subprocess.run([PYTHON, os.path.join(ROOT, "scripts", "stress_gen.py"), "--cpus", "2",
                           "--seed", "5", "--steps", str(STEPS)], capture_output=True, text=True,
                          check=True).stdout
    doc = json.loads(text)
    quiet = ("check", "counters", "checkpoint")
    doc["steps"] = [s for s in doc["steps"] if s["op"] not in quiet]
    assert len(doc["steps"]) > STEPS // 2
    path = tmp_path_factory.mktemp("long") / "long.json"
    path.write_text(json.dumps(doc))
    return str(path), len(doc["steps"])


def test_a_slow_guest_that_makes_progress_is_not_stopped(long_program, tmp_path, kvm):
    path, _ = long_program
    out = tmp_path / "report.json"
    r = run("run", path, "--inject=slow-steps", f"--timeout={TIMEOUT}", f"--json={out}",
            timeout=900)
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    report = json.loads(out.read_text())
    assert report["run"]["outcome"] == "completed"
    assert report["run"]["steps_done"] == report["run"]["steps_total"]
    # It ran for longer than the timeout, with no hypercall between the start and the end: the
    # completed steps alone kept the watchdog quiet.
    assert report["run"]["seconds"] > 2 * float(TIMEOUT), report["run"]


def test_a_guest_that_stops_making_progress_is_stopped_and_located(long_program, kvm):
    path, _ = long_program
    r = run("run", path, "--inject=stall", f"--timeout={TIMEOUT}", timeout=900)
    assert r.returncode == EXIT_WATCHDOG, r.stdout + r.stderr
    assert f"no step completed) for {TIMEOUT}s" in r.stderr, r.stderr
    # Where it stopped: halfway through the program, each vCPU named.
    assert "the program: " in r.stderr and " steps done; next, " in r.stderr, r.stderr
    assert "vCPU 0: " in r.stderr and "vCPU 1: " in r.stderr, r.stderr
