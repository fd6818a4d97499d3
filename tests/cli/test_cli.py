"""The activemm command as users meet it: exit codes and the messages they read.

Run by CTest (`cli`) with ACTIVEMM_BIN set to the built binary, through Debian's /usr/bin/python3.
Tests that boot a guest skip where /dev/kvm is unusable, unless ACTIVEMM_REQUIRE_KVM=1.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

BIN = os.environ.get("ACTIVEMM_BIN", "")

# vmm/exit_codes.h
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_GUEST_FAILED, EXIT_WATCHDOG, EXIT_NO_KVM = range(6)


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return False, str(e)
    os.close(fd)
    return True, ""


def needs_kvm():
    ok, why = kvm_usable()
    if ok:
        return
    if os.environ.get("ACTIVEMM_REQUIRE_KVM") == "1":
        pytest.fail(f"ACTIVEMM_REQUIRE_KVM=1 but /dev/kvm is unusable: {why}")
    pytest.skip(f"/dev/kvm is unusable here: {why}")


def run(*args, timeout=120):
    assert BIN, "ACTIVEMM_BIN is not set (run through ctest)"
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_no_command_is_a_usage_error():
    r = run()
    assert r.returncode == EXIT_USAGE
    assert "no command given" in r.stderr


def test_unknown_command_is_named():
    r = run("frobnicate")
    assert r.returncode == EXIT_USAGE
    assert "unknown command 'frobnicate'" in r.stderr


@pytest.mark.parametrize("flag, message", [
    ("--cpus=0", "--cpus=0: must be between 1 and 64"),
    ("--cpus=65", "--cpus=65: must be between 1 and 64"),
    ("--mem=lots", "--mem=lots: expected a size"),
    ("--timeout=0", "--timeout=0: expected seconds"),
    ("--inject=meteor", "--inject=meteor: expected none"),
])
def test_bad_flag_values_are_named(flag, message):
    r = run("selftest", flag)
    assert r.returncode == EXIT_USAGE
    assert message in r.stderr


def test_missing_kvm_device_says_what_to_do(tmp_path):
    r = run("selftest", f"--kvm={tmp_path}/no-such-kvm")
    assert r.returncode == EXIT_NO_KVM
    assert "does not exist" in r.stderr
    assert "modprobe" in r.stderr


def test_kvm_device_without_permission_says_what_to_do(tmp_path):
    if os.geteuid() == 0:
        # Root opens anything; drop to nobody, for whom a device like /dev/kvm (mode 0600 or
        # 0660 root:kvm) is off limits, and let it open the real device path.
        if not shutil.which("setpriv"):
            pytest.skip("setpriv (util-linux) is needed to drop root for this test")
        dev = "/dev/kvm" if os.path.exists("/dev/kvm") and not os.stat("/dev/kvm").st_mode & 0o006 \
            else None
        if dev is None:
            dev = tmp_path / "kvm"  # nobody cannot even reach it: EACCES all the same
            dev.write_text("")
            dev.chmod(0o600)
        # nobody must reach the binary: the clone may sit below a directory only root can enter.
        public = tempfile.mkdtemp(prefix="activemm-cli-", dir="/tmp")
        try:
            os.chmod(public, 0o755)
            binary = shutil.copy(BIN, public)
            os.chmod(binary, 0o755)
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                binary, "selftest", f"--kvm={dev}"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
        finally:
            shutil.rmtree(public)
    else:
        dev = tmp_path / "kvm"
        dev.write_text("")
        dev.chmod(0o400)
        r = run("selftest", f"--kvm={dev}")
    assert r.returncode == EXIT_NO_KVM, r.stderr
    assert "no permission to open" in r.stderr
    assert "usermod -aG kvm" in r.stderr


def test_selftest_passes_and_prints_a_row_per_cpu():
    needs_kvm()
    r = run("selftest", "--cpus=8")
    assert r.returncode == EXIT_OK, r.stderr
    assert "selftest passed" in r.stdout
    assert "8/8 CPUs reported in, 8 IPIs delivered, 8 ring-3 round trips" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == list(range(8))


def test_guest_fault_exits_3_with_the_report():
    needs_kvm()
    r = run("selftest", "--cpus=2", "--inject=kernel-fault")
    assert r.returncode == EXIT_GUEST_FAILED
    assert "guest exception on CPU 0: #PF (page fault)" in r.stderr
    assert "CR2 0xffffc90000000000" in r.stderr


def test_spinning_guest_exits_4_after_the_timeout():
    needs_kvm()
    r = run("selftest", "--cpus=2", "--inject=spin", "--timeout=1")
    assert r.returncode == EXIT_WATCHDOG
    assert "watchdog" in r.stderr
    assert "vCPU 1: running at RIP" in r.stderr


def test_verbose_shows_guest_log_lines():
    needs_kvm()
    r = run("selftest", "--cpus=1", "--verbose")
    assert r.returncode == EXIT_OK, r.stderr
    assert "[guest] cpu 0: cpu 0 online, apic id 0" in r.stderr
