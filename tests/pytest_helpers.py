"""Helpers shared by the pytest suites of tests/cli, tests/capture and tests/python.

CTest runs each folder as a pytest run of its own, with its own environment (`cli`,
`replay_capture`, `python`, `sweep`, each with a `_kvm` half; tests/CMakeLists.txt), so no one
conftest.py serves them all: CTest loads this module as a plugin (`-p pytest_helpers`, for the
`kvm` marker), and a test file that uses it imports it by name (pytest.ini puts tests/ and
scripts/ on sys.path; tests/cli/test_cost.py and test_timeline.py take these names through
test_cli):

    from pytest_helpers import needs_kvm, run

Standard library and pytest only. pytest does not rewrite the asserts of this module: each one
carries its own message.
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

PYTHON = "/usr/bin/python3"

# ---- the activemm binary (tests/cli, tests/capture, tests/python/test_sweep.py) ----------------

BIN = os.environ.get("ACTIVEMM_BIN", "")
# The programs of tests/workloads: ACTIVEMM_WORKLOADS, else next to the binary's build tree.
WORKLOADS = os.environ.get("ACTIVEMM_WORKLOADS") or (
    str(pathlib.Path(BIN).resolve().parents[1] / "tests" / "workloads") if BIN else "")
TRACEFS = "/sys/kernel/tracing"

# vmm/cli/exit_codes.h
(EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_GUEST_FAILED, EXIT_WATCHDOG, EXIT_NO_KVM,
 EXIT_HOST_ERROR) = range(7)


def kvm_usable():
    """(True, "") when /dev/kvm opens read-write, else (False, why)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, str(e)
    os.close(fd)
    return True, ""


def needs_kvm():
    """Skips the test where /dev/kvm is unusable; fails it instead with ACTIVEMM_REQUIRE_KVM=1."""
    ok, why = kvm_usable()
    if ok:
        return
    if os.environ.get("ACTIVEMM_REQUIRE_KVM") == "1":
        pytest.fail(f"ACTIVEMM_REQUIRE_KVM=1 but /dev/kvm is unusable: {why}")
    pytest.skip(f"/dev/kvm is unusable here: {why}")


@pytest.fixture(scope="session")
def kvm():
    """Marks a test, or a fixture, as one that runs guests: it skips where /dev/kvm is unusable
    (fails under ACTIVEMM_REQUIRE_KVM=1), and pytest_collection_modifyitems below gives every
    test that uses it, directly or through another fixture, the `kvm` marker. scripts/test.sh
    runs `-m "not kvm"` on a host without /dev/kvm and `-m kvm` inside the nested-KVM VM."""
    needs_kvm()


def pytest_configure(config):
    config.addinivalue_line("markers", "kvm: runs guests, so it needs a usable /dev/kvm")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "kvm" in item.fixturenames:
            item.add_marker(pytest.mark.kvm)


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("capturing needs root (tracefs); run the tests as root to cover it")


def needs_capture():
    """Skips the test unless it runs as root on a kernel with tracefs and the tlb/tlb_flush
    event, as a real `activemm capture` needs; returns whether tracefs is mounted."""
    needs_root()
    mounted = os.path.exists(f"{TRACEFS}/trace")
    if not mounted and "tracefs" not in pathlib.Path("/proc/filesystems").read_text():
        pytest.skip("this kernel has no tracefs (CONFIG_FTRACE)")
    if mounted and not os.path.exists(f"{TRACEFS}/events/tlb/tlb_flush/enable"):
        pytest.skip("this kernel has no tlb/tlb_flush trace event (x86 only)")
    return mounted


def workload_path(name):
    """The path of the built workload `name` (tests/workloads); fails the test if missing."""
    program = os.path.join(WORKLOADS, name)
    if not os.access(program, os.X_OK):
        pytest.fail(f"{program} is missing: build the project (tests/workloads)")
    return program


def run(*args, timeout=120):
    """ACTIVEMM_BIN with `args`, stdin closed: the CompletedProcess, output as text."""
    assert BIN, "ACTIVEMM_BIN is not set (run through ctest)"
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def as_nobody(prefix, folder_mode=0o755):
    """For a test run as root that drops to nobody (skipped without setpriv): yields (folder,
    run_as_nobody). folder is a fresh directory in /tmp (mode folder_mode) holding a copy of
    ACTIVEMM_BIN that nobody can run: the clone may sit below a directory only root can enter.
    run_as_nobody(*args) runs that copy as uid/gid 65534 without groups. The folder is removed
    afterwards."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop root for this test")
    public = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        os.chmod(public, folder_mode)
        binary = shutil.copy(BIN, public)
        os.chmod(binary, 0o755)

        def run_as_nobody(*args):
            return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   binary, *args], capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)

        yield public, run_as_nobody
    finally:
        shutil.rmtree(public)


# ---- the scenario scripts (tests/python) ------------------------------------------------------

# The model ops of docs/scenarios.md (the ones a parallel block may hold) and the fields each
# may carry, in the order of the docs.
MODEL_OP_FIELDS = {
    "spawn": {"task", "pages", "cpu"},
    "clone_vm": {"parent", "task"},
    "fork": {"parent", "task"},
    "kthread": {"task"},
    "run": {"cpu", "task"},
    "idle": {"cpu"},
    "exec": {"task", "pages"},
    "exit": {"task"},
    "use_mm": {"task", "mm"},
    "unuse_mm": {"task"},
    "mmap": {"task", "pages"},
    "munmap": {"task", "pages"},
    "mprotect": {"task", "pages", "prot"},
}


def assert_usage_error(script, args):
    """`script` run with `args` exits 2 with a usage message on stderr and nothing on stdout."""
    out = subprocess.run([PYTHON, script, *args], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stdout == "", out.stdout
    assert "usage" in out.stderr, out.stderr
