"""`activemm cost`: the table it prints, the JSON it writes, and its usage errors.

Run by CTest (`cli`) with ACTIVEMM_BIN set to the built binary, through Debian's /usr/bin/python3.
Tests that boot a guest skip where /dev/kvm is unusable, unless ACTIVEMM_REQUIRE_KVM=1. Timings
are never asserted: only the shape of the output and the exact counts.
"""

import json

import pytest

from test_cli import EXIT_OK, EXIT_USAGE, check_host, kvm, run

CASES = ["user_to_kernel", "kernel_to_user", "user_to_user", "user_to_user_same_mm",
         "kernel_to_kernel"]
TITLES = ["user -> kernel thread", "kernel thread -> user", "user -> user, other mm",
          "user -> user, same mm", "kernel -> kernel"]


def test_cost_prints_the_table_and_writes_valid_json(tmp_path, kvm):
    out = tmp_path / "cost.json"
    r = run("cost", "--iterations=3", f"--json={out}")
    assert r.returncode == EXIT_OK, r.stderr
    for title in TITLES:
        assert title in r.stdout
    assert "marker overhead" in r.stdout
    assert not list(tmp_path.glob("cost.json.tmp*"))

    report = json.loads(out.read_text())
    assert report["iterations"] == 3
    assert report["pcid"] in ("off", "modeled", "hardware")
    check_host(report, r.stdout, [report["pcid"]])
    assert f"host: {report['host']['summary']}; guest TSC " in r.stdout
    assert [(c["case"], c["lazy_tlb"]) for c in report["cases"]] == [
        (name, mode) for name in CASES for mode in ("on", "off")]
    counted = report["instructions_available"]
    if not counted:
        assert "instruction counts: not available on this host" in r.stdout
        assert report["instructions_note"]
    for c in report["cases"]:
        assert c["iterations"] == 3
        cycles = c["cycles"]
        assert len(cycles["per_iteration"]) == 3
        assert cycles["min"] <= cycles["median"] <= cycles["max"]
        if counted:
            insns = c["instructions"]
            assert insns["exact"] and insns["min"] == insns["max"] > 0
            assert insns["per_iteration"] == [insns["median"]] * 3
        else:
            assert c["instructions"] is None
    by = {(c["case"], c["lazy_tlb"]): c for c in report["cases"]}
    # Lazy TLB keeps the page table on user -> kernel thread -> user; off loads init_mm and back.
    assert by[("user_to_kernel", "on")]["cr3_writes"] == 0
    assert by[("user_to_kernel", "off")]["cr3_writes"] == 1
    assert by[("kernel_to_user", "on")]["cr3_writes"] == 0
    assert by[("kernel_to_user", "off")]["cr3_writes"] == 1
    if counted:
        assert (by[("user_to_kernel", "on")]["instructions"]["median"]
                < by[("user_to_kernel", "off")]["instructions"]["median"])


def test_cost_with_one_mode_measures_only_that_mode(kvm):
    r = run("cost", "--iterations=1", "--lazy-tlb=off")
    assert r.returncode == EXIT_OK, r.stderr
    assert "lazy TLB off" in r.stdout and "lazy TLB on" not in r.stdout


@pytest.mark.parametrize("flag, message", [
    ("--iterations=0", "--iterations=0: must be between 1 and 100000"),
    ("--iterations=100001", "--iterations=100001: must be between 1 and 100000"),
    ("--pcid=sometimes", "--pcid=sometimes: expected auto, modeled or off"),
    ("--asids=0", "--asids=0: must be between 1 and 16"),
    ("--lazy-tlb=maybe", "--lazy-tlb=maybe: expected on, off or shootdown"),
])
def test_cost_bad_flags_are_usage_errors(flag, message):
    r = run("cost", flag)
    assert r.returncode == EXIT_USAGE
    assert message in r.stderr


def test_cost_takes_no_positional_argument():
    r = run("cost", "extra")
    assert r.returncode == EXIT_USAGE
    assert "unexpected argument 'extra'" in r.stderr
