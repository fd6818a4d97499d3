"""A hostile guest (docs/architecture.md, "A hostile guest"): the host never trusts what it reads
from guest memory, so garbage there ends the run with a reported violation or guest failure and
its exit status, within the watchdog, never a host crash, hang or unbounded allocation.

`--inject=hostile-CASE` (test hooks, not model bugs: shared/mm_abi.h MmBug kHostile*, the guest
side in guest/programs/hostile.cc) makes the guest, at the middle step of the built-in scenario, write
garbage into what the host reads and ask the host to verify. If the host let it go on, the guest
panics with "hostile hook: the host verified the corrupted state and let the guest go on", which
these tests would see as the wrong exit status and message.
"""

import os
import time

import pytest

from pytest_helpers import (EXIT_CHECK_FAILED, EXIT_GUEST_FAILED, EXIT_WATCHDOG,
                            kvm, run)  # noqa: F401

# A case the host detects ends long before this watchdog timeout (under a second on nested KVM
# under TCG, the slowest host); hitting it would be exit 4, not the status asserted. No test
# here bounds a run's wall-clock time from above (a slower host would fail it): the exit status
# says what ended the run, and run()'s own timeout catches a hang.
DETECT_TIMEOUT = 30
# The cases only the watchdog can end: a short timeout.
WATCHDOG_TIMEOUT = 2


def hostile(case, timeout):
    """Runs the built-in scenario with --inject=hostile-CASE: (CompletedProcess, seconds)."""
    start = time.monotonic()
    r = run("run", f"--inject=hostile-{case}", f"--timeout={timeout}", timeout=120)
    seconds = time.monotonic() - start
    out = r.stdout + r.stderr
    assert "let the guest go on" not in out, out  # the host missed the corruption
    assert "AddressSanitizer" not in out and "runtime error" not in out, out
    return r, out, seconds


# case -> (exit status, what the report must say)
DETECTED = {
    # rq->curr and rq->prev_mm, a task's mm and active_mm out of every range.
    "task-index": (EXIT_CHECK_FAILED, [
        "violation [reference] task 'idle/0': mm is 123456, not an mm",
        "active_mm is -77, not an mm",
        "violation [rq] CPU 1: rq->curr is 2147483632",
        "rq->prev_mm is still #1073741824"]),
    # A live mm slot whose mm_struct is at the end of the address space; a slot state of junk.
    "mm-slot": (EXIT_CHECK_FAILED, [
        "violation [guest-state] mm slot 0 has state 3735928559",
        "mm_struct at 0xfffffffffffff000: guest physical range [0xfffffffffffff000, +0x8d0) is "
        "outside guest RAM"]),
    # The model directory's tables outside RAM (one range wrapping past 2^64).
    "directory": (EXIT_CHECK_FAILED, [
        "run ended: check failed",
        "the guest's model directory points outside RAM"]),
    # Refcounts at INT32_MAX/MIN, tlb_gen, ctx_id and per-CPU counters near 2^64, nr_pages.
    "counts": (EXIT_CHECK_FAILED, [
        "counter context_switches is 0xffffffffffffffff, more than any run counts",
        "nr_pages 4294967295 exceeds 64",
        "violation [mm_users] mm 'A': mm_users is -2147483648",
        "violation [mm_count] mm 'A': mm_count is 2147483647",
        "but the mm is at 18446744073709551615: a flush was missed"]),
    # Page tables that loop: found, not followed.
    "pt-self": (EXIT_CHECK_FAILED, [
        "violation [page-tables] mm 'A': walking the user half: loop:"]),
    "pt-cycle": (EXIT_CHECK_FAILED, [
        "violation [page-tables] mm 'A': walking the user half: loop:"]),
    "pt-outside": (EXIT_CHECK_FAILED, [
        "violation [page-tables] mm 'A': walking the user half: table address outside guest RAM"]),
    # The model's pgd outside RAM (the real CR3 left alone).
    "pgd": (EXIT_CHECK_FAILED, [
        "loaded_mm 'A' needs 0xc0000000 (pgd 0xc0000000, PCID 0)",
        "violation [page-tables] mm 'A': pgd 0xc0000000 is not a page in guest RAM"]),
    # A log line and a panic report without terminators, counts past their arrays.
    "string": (EXIT_GUEST_FAILED, [
        "run ended: guest panic",
        ":4294967295: ABCDEFGHIJKLMNO?QRSTUVWXYZABCDE?",
        "[values: 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, "
        "0xffffffffffffffff]\n"]),
    # A fill hypercall (abi::Hypercall::kFill) for two pages wrapping past 2^64.
    "fill": (EXIT_GUEST_FAILED, [
        "run ended: guest panic",
        "a fill hypercall: guest physical range [0xfffffffffffff000, +0x2000) is outside guest "
        "RAM"]),
}


@pytest.mark.parametrize("case", sorted(DETECTED))
def test_hostile_state_is_reported(case, kvm):
    status, messages = DETECTED[case]
    r, out, seconds = hostile(case, DETECT_TIMEOUT)
    assert r.returncode == status, out
    for m in messages:
        assert m in out, f"{m!r} missing:\n{out}"
    if case == "string":
        # Bounded: the panic line holds at most the report's arrays (48 + 160 bytes) and four
        # values, whatever the counts said; unprintable bytes are shown as '?'.
        line = next(x for x in out.splitlines() if x.startswith("guest panic on CPU"))
        assert len(line) < 160 + 48 + 4 * 20 + 80, line
        assert "\x01" not in out and "\xff" not in out


def test_hypercall_flood_is_stopped_by_the_watchdog(kvm):
    # Log lines (no terminator), hellos, marks and verifications in a loop, no step completed:
    # hypercalls are no progress, so the watchdog stops it; the log kept is bounded.
    r, out, seconds = hostile("flood", WATCHDOG_TIMEOUT)
    assert r.returncode == EXIT_WATCHDOG, out
    assert (f"watchdog: the guest made no progress (no step completed) for "
            f"{WATCHDOG_TIMEOUT}s") in out, out
    assert "hypercalls since the last progress" in out, out
    assert seconds >= WATCHDOG_TIMEOUT, seconds  # not before the timeout
    assert len(out) < 20000, len(out)


def test_cr3_outside_ram_is_a_reported_guest_failure(kvm):
    # The real CR3 outside RAM: every fetch faults and so does every handler. Hardware KVM
    # makes it a vCPU error (a triple fault, or an access outside RAM it cannot emulate: exit
    # 3); nested KVM under TCG retries the fetch for ever, which only the watchdog ends (exit
    # 4), naming the CR3.
    timeout = WATCHDOG_TIMEOUT
    r, out, seconds = hostile("cr3", timeout)
    assert r.returncode in (EXIT_GUEST_FAILED, EXIT_WATCHDOG), out
    if r.returncode == EXIT_GUEST_FAILED:
        assert "run ended: vCPU error" in out, out
    else:
        assert "CR3 0xc0000000" in out and "(its CR3 root is outside guest RAM)" in out, out
