"""The activemm command as users meet it: exit codes and the messages they read.

Run by CTest (`cli`) with ACTIVEMM_BIN set to the built binary, through Debian's /usr/bin/python3.
Tests that boot a guest skip where /dev/kvm is unusable, unless ACTIVEMM_REQUIRE_KVM=1.
"""

import json
import os
import re
import subprocess

import pytest

from pytest_helpers import (
    BIN, EXIT_CHECK_FAILED, EXIT_GUEST_FAILED, EXIT_NO_KVM, EXIT_OK, EXIT_USAGE, EXIT_WATCHDOG,
    as_nobody, kvm, run)

# ---- the host every report names (vmm/kvm/kvm_host.h, docs/report.md) -----------------------------

HOST_KINDS = ("hardware", "software", "nested-tcg", "nested")
# The line every report prints: the kind first, the PCID verdict last.
HOST_LINE = re.compile(r"^host: (hardware KVM \(|software KVM \(|nested KVM under QEMU TCG \()"
                       r".*, KVM API \d+, (PCID available|no PCID \(modeled only\))(;.*)?$", re.M)


def check_host(report, stdout, pcid_modes):
    """Asserts the report's "host" object is the documented one, consistent in itself, printed
    as the text's host line, and that real PCIDs (`hardware`) ran among `pcid_modes` (the modes
    of a --pcid=auto run) exactly when the host offers PCID."""
    host = report["host"]
    assert set(host) == {"kind", "provider", "hypervisor", "pcid", "api", "summary"}, host
    assert host["kind"] in HOST_KINDS, host
    assert host["provider"] in ("kvm_intel", "kvm_amd", "kvm_pvm", ""), host
    # kvm_pvm is the software kind wherever it runs; the vendor modules by what they run under.
    assert (host["kind"] == "software") == (host["provider"] == "kvm_pvm"), host
    if host["kind"] != "software":
        assert (host["kind"] == "nested-tcg") == (host["hypervisor"] == "TCGTCGTCGTCG"), host
    if host["kind"] == "hardware":
        assert host["hypervisor"] == "", host
    assert type(host["pcid"]) is bool, host
    assert type(host["api"]) is int and host["api"] == 12, host
    assert f", KVM API {host['api']}, " in host["summary"], host
    assert host["summary"].endswith("PCID available" if host["pcid"] else "no PCID (modeled only)")
    assert f"host: {host['summary']}" in stdout, stdout
    assert HOST_LINE.search(stdout), stdout
    assert host["pcid"] == ("hardware" in pcid_modes), (host, pcid_modes)


# ---- the command line itself: help, usage errors, hints (no guest) -----------------------------

COMMANDS = ("selftest", "run", "compare", "stress", "replay", "capture", "cost", "help")
# The line after a command-line error; never after an error in a file's content.
HINT = re.compile(r"^Run 'activemm help( [a-z]+)?' for "
                  r"(its usage and flags|the list of commands)\.$", re.M)


def usage_error(r, message, command=None):
    """Asserts `r` is a command-line error: exit 2, nothing on stdout, "activemm: " and a line
    that contains `message`, then the hint to `activemm help COMMAND` (or `activemm help`)."""
    assert r.returncode == EXIT_USAGE, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("activemm: ") and message in lines[0], r.stderr
    if command:
        assert lines[1] == f"Run 'activemm help {command}' for its usage and flags.", r.stderr
    else:
        assert lines[1] == "Run 'activemm help' for the list of commands.", r.stderr


def input_error(r, message):
    """Asserts `r` is an error in what the command line points at (a file, a script, a folder):
    exit 2, the message, and no hint to the help: the command line was right."""
    assert r.returncode == EXIT_USAGE, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert not HINT.search(r.stderr), r.stderr
    assert "activemm help" not in r.stderr and "--help" not in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["help"], ["--help"], ["-h"]])
def test_help_lists_every_command_and_the_exit_statuses(args):
    r = run(*args)
    assert r.returncode == EXIT_OK, r.stderr
    assert r.stderr == ""
    listed = re.findall(r"^  ([a-z]+)\b", r.stdout.split("Commands:\n")[1].split("\n\n")[0], re.M)
    assert tuple(listed) == COMMANDS, r.stdout
    assert "run [SCENARIO.json|SCENARIO.py]" in r.stdout
    # compare as it is: every lazy mode under each PCID mode the host has.
    assert "lazy TLB on, shootdown and off, under each PCID mode" in " ".join(r.stdout.split())
    for code in range(7):
        assert re.search(rf"^  {code}  \S", r.stdout, re.M), r.stdout
    assert "__prime" not in r.stdout
    assert "Flags from" not in r.stdout and "main.cc" not in r.stdout


# The flags each command takes, and some it must not list (those of other commands).
OWN_FLAGS = {
    "selftest": ({"--cpus", "--mem", "--timeout", "--inject", "--verbose", "--kvm"},
                 {"--lazy-tlb", "--iterations", "--json", "--buffer-kb", "--decisions"}),
    "run": ({"--cpus", "--lazy-tlb", "--pcid", "--asids", "--inject", "--verify", "--json",
             "--timeline", "--mem", "--timeout", "--verbose", "--kvm"},
            {"--iterations", "--seed", "--steps", "--buffer-kb", "--decisions", "--explain"}),
    "compare": ({"--cpus", "--pcid", "--verify", "--json", "--timeline"},
                {"--lazy-tlb", "--iterations", "--seed"}),
    "stress": ({"--cpus", "--seed", "--steps", "--inject", "--json"},
               {"--verify", "--iterations", "--decisions"}),
    "replay": ({"--decisions", "--plan", "--explain", "--json", "--timeline", "--lazy-tlb"},
               {"--cpus", "--iterations", "--seed"}),
    "capture": ({"--buffer-kb", "--tracefs"}, {"--cpus", "--json", "--verbose", "--kvm"}),
    "cost": ({"--iterations", "--lazy-tlb", "--pcid", "--asids", "--json"},
             {"--cpus", "--inject", "--verify", "--timeline", "--seed"}),
    "help": (set(), {"--cpus", "--verbose"}),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_a_command_lists_its_own_flags_only(command):
    r = run("help", command)
    assert r.returncode == EXIT_OK, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith(f"Usage: activemm {command}"), r.stdout
    listed = set(re.findall(r"^  (--[a-z-]+)", r.stdout, re.M))
    own, others = OWN_FLAGS[command]
    assert own <= listed, (own - listed, r.stdout)
    assert not others & listed, (others & listed, r.stdout)
    assert "Exit status:" in r.stdout
    # The other ways to ask print the same page.
    if command != "help":
        for form in (["--help"], ["-h"]):
            again = run(command, *form)
            assert (again.returncode, again.stdout, again.stderr) == (EXIT_OK, r.stdout, "")


def test_help_shows_defaults_as_users_understand_them():
    run_help = run("help", "run").stdout
    assert re.search(r"--cpus=N .*default: the scenario's \"cpus\"", run_help), run_help
    assert "default: 0" not in run_help
    assert re.search(r"--cpus=N .*default: 4\)", run("help", "selftest").stdout)
    assert "--lazy_tlb" not in run_help and "written --" not in run_help
    # One table per --inject family: every bug name, in the help of the commands that take it.
    for bug in ("skip-lazy-mmgrab", "double-mmdrop", "no-cpumask", "asid-no-flush"):
        assert bug in run_help
    assert "kernel-fault" in run("help", "selftest").stdout and "kernel-fault" not in run_help


def test_help_for_an_unknown_command_suggests_the_nearest():
    usage_error(run("help", "selftset"), "unknown command 'selftset' (did you mean selftest?)")
    usage_error(run("help", "nosuch"), "unknown command 'nosuch'")


def test_no_command_is_a_usage_error():
    r = run()
    usage_error(r, "no command given")
    for command in COMMANDS:
        assert command in r.stderr


def test_unknown_command_is_named():
    usage_error(run("frobnicate"), "unknown command 'frobnicate'")
    usage_error(run("comapre"), "unknown command 'comapre' (did you mean compare?)")


@pytest.mark.parametrize("args, message, command", [
    (["run", "--lazy-tbl=off"], "unknown flag --lazy-tbl (did you mean --lazy-tlb?)", "run"),
    (["run", "--lazy_tlb=off"], "unknown flag --lazy_tlb (did you mean --lazy-tlb?)", "run"),
    (["run", "--cpus=abc"], "--cpus=abc: expected an integer 1..64", "run"),
    (["selftest", "--cpus", "abc"], "--cpus=abc: expected an integer 1..64", "selftest"),
    (["run", "--verify=always"], "--verify=always: expected end or every-step", "run"),
    (["run", "--json"], "--json: no value given (--json=FILE)", "run"),
    (["run", "--iterations=3"], "--iterations: not a flag of run (it is cost's)", "run"),
    (["cost", "--inject=no-cpumask"], "--inject: not a flag of cost", "cost"),
    (["replay", "DIR", "--cpus=2"],
     "--cpus: not a flag of replay: replay runs one vCPU per traced CPU", "replay"),
    (["compare", "--lazy-tlb=on"], "--lazy-tlb: not a flag of compare: compare runs every lazy "
     "mode", "compare"),
    (["run", "a.json", "b.json"], "unexpected argument 'b.json'", "run"),
    (["--lazy-tbl=off"], "unknown flag --lazy-tbl (did you mean --lazy-tlb?)", None),
])
def test_command_line_errors_exit_2_with_a_hint(args, message, command):
    usage_error(run(*args), message, command)


@pytest.mark.parametrize("flag, message", [
    ("--cpus=-1", "--cpus=-1: must be between 1 and 64"),
    ("--cpus=65", "--cpus=65: must be between 1 and 64"),
    ("--mem=lots", "--mem=lots: expected a size"),
    ("--timeout=0", "--timeout=0: expected seconds"),
    ("--inject=meteor", "--inject=meteor: expected none"),
])
def test_bad_flag_values_are_named(flag, message):
    usage_error(run("selftest", flag), message, "selftest")


def test_a_missing_scenario_file_says_why_without_the_hint(tmp_path):
    for name in ("missing.json", "missing.py"):
        r = run("run", str(tmp_path / name))
        input_error(r, f"{tmp_path / name}: cannot read the scenario ")
        assert r.stderr.rstrip().endswith(": No such file or directory"), r.stderr


def test_a_scenario_script_anywhere_imports_the_library(tmp_path):
    # A script in a folder of its own, importing activemm_scenario as the docs show, and a
    # module of the user's through their own PYTHONPATH (kept, after the library's folder). The
    # scenario is impossible (exec of a task that never ran), so it fails where the tool
    # compiles it: past the import, before any guest.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_helpers.py").write_text("TASK = 'A'\n")
    script = tmp_path / "elsewhere" / "scenario.py"
    script.parent.mkdir()
    script.write_text("from activemm_scenario import Scenario, main\n"
                      "from my_helpers import TASK\n"
                      "\n"
                      "if __name__ == '__main__':\n"
                      "    main(Scenario('anywhere', cpus=2).spawn(TASK).exec(TASK))\n")
    env = {k: v for k, v in os.environ.items() if k != "ACTIVEMM_SCRIPTS"}
    env["PYTHONPATH"] = str(mine)
    r = subprocess.run([BIN, "run", str(script)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
    assert "ModuleNotFoundError" not in r.stderr, r.stderr
    input_error(r, f"{script}: step 1 (exec)")


def test_missing_kvm_device_says_what_to_do(tmp_path):
    r = run("selftest", f"--kvm={tmp_path}/no-such-kvm")
    assert r.returncode == EXIT_NO_KVM
    assert "does not exist" in r.stderr
    assert "modprobe" in r.stderr


def test_kvm_device_without_permission_says_what_to_do(tmp_path):
    if os.geteuid() == 0:
        # Root opens anything; drop to nobody, for whom a device like /dev/kvm (mode 0600 or
        # 0660 root:kvm) is off limits, and let it open the real device path.
        with as_nobody("activemm-cli-") as (_, run_as_nobody):
            dev = "/dev/kvm" if os.path.exists("/dev/kvm") and \
                not os.stat("/dev/kvm").st_mode & 0o006 else None
            if dev is None:
                dev = tmp_path / "kvm"  # nobody cannot even reach it: EACCES all the same
                dev.write_text("")
                dev.chmod(0o600)
            r = run_as_nobody("selftest", f"--kvm={dev}")
    else:
        dev = tmp_path / "kvm"
        dev.write_text("")
        dev.chmod(0o400)
        r = run("selftest", f"--kvm={dev}")
    assert r.returncode == EXIT_NO_KVM, r.stderr
    assert "no permission to open" in r.stderr
    assert "usermod -aG kvm" in r.stderr


def test_selftest_passes_and_prints_a_row_per_cpu(kvm):
    r = run("selftest", "--cpus=8")
    assert r.returncode == EXIT_OK, r.stderr
    assert "selftest passed" in r.stdout
    assert "8/8 CPUs reported in, 8 IPIs delivered, 8 ring-3 round trips" in r.stdout
    assert r.stdout.splitlines()[1] == HOST_LINE.search(r.stdout).group(0), r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == list(range(8))


def test_guest_fault_exits_3_with_the_report(kvm):
    r = run("selftest", "--cpus=2", "--inject=kernel-fault")
    assert r.returncode == EXIT_GUEST_FAILED
    assert "guest exception on CPU 0: #PF (page fault)" in r.stderr
    assert "CR2 0xffffc90000000000" in r.stderr


def test_spinning_guest_exits_4_after_the_timeout(kvm):
    r = run("selftest", "--cpus=2", "--inject=spin", "--timeout=1")
    assert r.returncode == EXIT_WATCHDOG
    assert "watchdog" in r.stderr
    assert "vCPU 1: running at RIP" in r.stderr


def test_verbose_shows_guest_log_lines(kvm):
    r = run("selftest", "--cpus=1", "--verbose")
    assert r.returncode == EXIT_OK, r.stderr
    assert "[guest] cpu 0: cpu 0 online, apic id 0" in r.stderr


# ---- scenarios: run and compare ---------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANNED = sorted(os.path.join(ROOT, "scripts", "scenarios", f)
                for f in os.listdir(os.path.join(ROOT, "scripts", "scenarios"))
                if f.endswith(".py"))


@pytest.mark.parametrize("pcid", ["auto", "off"])
@pytest.mark.parametrize("mode", ["on", "shootdown", "off"])
@pytest.mark.parametrize("scenario", CANNED, ids=lambda p: os.path.basename(p)[:-3])
def test_canned_scenario_holds_its_expectations(scenario, mode, pcid, kvm):
    # Every check and counter in the canned scenarios was derived by hand from the Linux rules
    # (the comments beside them), for every mode; the host verifies all invariants after every
    # step.
    r = run("run", scenario, f"--lazy-tlb={mode}", f"--pcid={pcid}", "--verify=every-step")
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    verdict = re.search(r"^expectations: (\d+) passed, 0 failed; invariant violations: 0$",
                        r.stdout, re.M)
    assert verdict, r.stdout
    assert HOST_LINE.search(r.stdout), r.stdout
    assert int(verdict.group(1)) >= 3


def test_run_writes_the_documented_json(tmp_path, kvm):
    out = tmp_path / "report.json"
    r = run("run", f"--json={out}")
    assert r.returncode == EXIT_OK, r.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == {"lazy_tlb": True, "lazy": "on", "pcid": "modeled", "asids": 6}
    for key in ("context_switches", "cr3_writes", "cr3_writes_flush", "cr3_writes_noflush",
                "invlpg", "ipis_sent"):
        assert key in report["totals"]
        assert report["totals"][key] == sum(c[key] for c in report["cpus"])
    assert report["checks"]["failed"] == 0 and report["checks"]["passed"] > 0
    assert report["violations"] == []
    assert {"name", "mm_users", "mm_count", "freed"} <= set(report["mms"][0])
    check_host(report, r.stdout, [report["mode"]["pcid"]])
    assert r.stdout.splitlines()[1] == f"host: {report['host']['summary']}"
    assert not list(tmp_path.glob("report.json.tmp*"))


def test_run_table_has_a_row_per_counter_named_and_valued_as_in_the_json(tmp_path, kvm):
    out = tmp_path / "report.json"
    r = run("run", f"--json={out}")
    assert r.returncode == EXIT_OK, r.stderr
    report = json.loads(out.read_text())
    lines = r.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("counter ")))
    assert lines[head].split() == ["counter"] + [
        w for c in range(len(report["cpus"])) for w in ("cpu", str(c))] + ["total"]
    rows = {}
    for line in lines[head + 1:]:
        if line.startswith("steps: "):
            break
        name, *values = line.split()
        rows[name] = [int(v) for v in values]
    # Every counter, each once (the JSON's keys are sorted, the table is in the ABI's order).
    assert sorted(rows) == sorted(report["totals"]) and len(rows) >= 18, rows
    for name, values in rows.items():
        assert values == [c[name] for c in report["cpus"]] + [report["totals"][name]], name


def test_compare_shows_every_mode_and_the_cr3_writes_saved(tmp_path, kvm):
    out = tmp_path / "compare.json"
    r = run("compare", f"--json={out}")
    assert r.returncode == EXIT_OK, r.stderr
    assert "lazy on" in r.stdout and "shootdown" in r.stdout and "lazy off" in r.stdout
    assert "PCID modeled" in r.stdout and "PCID off" in r.stdout
    report = json.loads(out.read_text())
    modes = [(run_["mode"]["lazy"], run_["mode"]["pcid"]) for run_ in report["runs"]]
    pcids = ["modeled", "off"]
    if "hardware" in {p for _, p in modes}:  # real PCIDs where the host CPU has them
        pcids = ["hardware"] + pcids
    assert modes == [(lazy, p) for p in pcids for lazy in ("on", "shootdown", "off")]
    check_host(report, r.stdout, pcids)
    assert r.stdout.splitlines()[1] == f"host: {report['host']['summary']}"
    by_mode = {m: run_ for m, run_ in zip(modes, report["runs"])}
    for saving in report["savings"]:
        mode = by_mode[(saving["lazy"], saving["pcid"])]
        off = by_mode[("off", saving["pcid"])]
        saved = off["totals"]["cr3_writes"] - mode["totals"]["cr3_writes"]
        assert saving["saved"]["cr3_writes"] == saved
        assert saved > 0  # the built-in scenario borrows mms in kernel threads
    assert {(s["lazy"], s["pcid"]) for s in report["savings"]} == {
        (lazy, p) for p in pcids for lazy in ("on", "shootdown")}


@pytest.mark.parametrize("steps, message", [
    ('[{"op": "spawn", "task": "A"}, {"op": "exec", "task": "A"}]',
     "step 1 (exec)"),
    ('[{"op": "kthread", "task": "K"}, {"op": "run", "cpu": 3, "task": "K"}]',
     "step 1 (run)"),
    ('[{"op": "teleport", "task": "A"}]', "step 0 (teleport)"),
])
def test_impossible_scenarios_are_rejected_before_the_guest_starts(tmp_path, steps, message):
    f = tmp_path / "bad.json"
    f.write_text('{"version": 1, "name": "bad", "cpus": 2, "steps": %s}' % steps)
    r = run("run", str(f))
    input_error(r, str(f))
    assert message in r.stderr


def test_malformed_json_names_the_file(tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('{"version": 1, "name": ')
    r = run("run", str(f))
    input_error(r, "broken.json")
    assert "invalid JSON" in r.stderr


def test_a_failing_scenario_script_is_reported(tmp_path):
    f = tmp_path / "fails.py"
    f.write_text("raise SystemExit(3)\n")
    r = run("run", str(f))
    input_error(r, "the scenario script failed (exit status 3)")


def test_planted_bug_fails_the_run_with_its_rule(kvm):
    r = run("run", "--inject=no-cpumask", "--verify=every-step")
    assert r.returncode == EXIT_CHECK_FAILED
    assert "[mm_cpumask]" in r.stderr


@pytest.mark.parametrize("cpus", [2, 16])
def test_stress_runs_a_seeded_random_scenario_with_zero_violations(cpus, kvm):
    r = run("stress", f"--cpus={cpus}", "--seed=3", "--steps=300", timeout=300)
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    # Every program step ran: the 300 model steps, the heads of parallel blocks, the final
    # checkpoint and the end.
    done = re.search(r"steps: (\d+)/(\d+) executed", r.stdout)
    assert done and done.group(1) == done.group(2) and int(done.group(1)) >= 302, r.stdout
    assert "violations: 0" in r.stdout

