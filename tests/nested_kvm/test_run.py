"""scripts/nested_kvm/run.sh, the runner that gives a host without /dev/kvm a VM with one: its
exit status, its streamed output, its timeout and its errors. CTest's `nested_kvm_runner`
(tests/CMakeLists.txt) runs these on every host, with or without /dev/kvm: QEMU's TCG needs
neither. Each test that boots the VM takes 10-30 s."""

import os
import pathlib
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ROOT / "scripts" / "nested_kvm" / "run.sh"
RUNNER_FAILED, TIMED_OUT = 125, 124


def runner(*args, env=None, timeout=300):
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def root_needed():
    if os.geteuid() != 0:
        pytest.skip("run.sh needs root (QEMU's 9p passthrough of the host root)")


def test_the_command_sees_dev_kvm_and_its_output_streams_and_its_status_comes_back(
        root_needed, tmp_path):
    # The command prints a line, then waits for a file the test writes only after it has read
    # that line: if run.sh held the output back until the end, neither would ever finish (the
    # runner's timeout would end it with 124).
    go = tmp_path / "go"
    script = ("test -c /dev/kvm || { echo 'no /dev/kvm'; exit 9; }; "
              "echo \"first $ACTIVEMM_NESTED_KVM $GREETING\"; "
              f"while [ ! -e {go} ]; do sleep 0.1; done; "
              "echo second; echo to-stderr >&2; "
              f"touch {tmp_path}/written; exit 7")
    p = subprocess.Popen(["bash", str(RUN), "--timeout", "240", "--rw", str(tmp_path),
                          "--env", "GREETING=hello there", "--", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(p.stderr.read()))
    reader.start()
    try:
        first = p.stdout.readline()
        assert first == "first 1 hello there\n", (first, p.poll())
        go.touch()
        rest = p.stdout.read()
        status = p.wait(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
        reader.join()
    assert status == 7, (status, rest, stderr)
    assert rest == "second\nto-stderr\n", rest
    assert (tmp_path / "written").exists()  # --rw: the VM wrote into this host folder
    assert "nested-kvm: command exited with status 7" in stderr[0], stderr[0]


def test_a_command_that_does_not_exist_is_127(root_needed):
    r = runner("--", "no-such-command-anywhere")
    assert r.returncode == 127, (r.returncode, r.stdout, r.stderr)
    assert "no-such-command-anywhere" in r.stdout, r.stdout


def test_the_timeout_stops_the_vm_with_124(root_needed):
    r = runner("--timeout", "5", "--", "sleep", "600")
    assert r.returncode == TIMED_OUT, (r.returncode, r.stdout, r.stderr)
    assert "nested-kvm: timed out after 5s" in r.stderr, r.stderr


def test_a_missing_kernel_package_is_named(root_needed, tmp_path):
    pkg = "linux-image-0.0.0-0-nosuchkernel-amd64"
    r = runner("--cache", str(tmp_path / "cache"), "--", "true",
               env={"ACTIVEMM_NESTED_KERNEL_PKG": pkg})
    assert r.returncode == RUNNER_FAILED, (r.returncode, r.stderr)
    assert f"apt-get download {pkg} failed" in r.stderr, r.stderr
    assert not list((tmp_path / "cache").glob(pkg)), "no half-unpacked kernel is left"


@pytest.mark.parametrize("args, message", [
    (["--cpus", "two", "--", "true"], "--cpus wants a positive number, not 'two'"),
    (["--timeout", "0", "--", "true"], "--timeout wants a positive number of seconds"),
    (["--rw", "/no/such/folder", "--", "true"], "--rw /no/such/folder: no such folder"),
    (["--env", "1X=y", "--", "true"], "--env '1X=y' is not NAME=VALUE"),
    (["--frobnicate", "--", "true"], "unknown option --frobnicate"),
    ([], "no command given"),
])
def test_bad_options_are_named_before_anything_boots(args, message):
    r = runner(*args)
    assert r.returncode == RUNNER_FAILED, (r.returncode, r.stderr)
    assert f"nested-kvm: {message}" in r.stderr, r.stderr
    assert "booting" not in r.stderr, r.stderr


def test_help_describes_the_options():
    r = runner("--help")
    assert r.returncode == 0, r.stderr
    for option in ("--cpus", "--rw", "--env", "--timeout", "Exit status"):
        assert option in r.stdout, option
