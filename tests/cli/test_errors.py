"""The bad-input catalogue (docs/errors.md): every kind of user error, its exact message, its exit
status, one error line (plus at most the hint to the help), no traceback, and nothing written.

Run by CTest (`cli`) with ACTIVEMM_BIN set, through Debian's /usr/bin/python3. Almost every error
here is caught before /dev/kvm is opened, so these tests run on any host; the two that need a
guest run use the `kvm` fixture. Tests that mount a tmpfs or drop to nobody need root (CTest runs
as root); elsewhere they skip and say why. The errors already covered by test_cli.py,
test_replay.py and test_capture.py are listed in docs/errors.md by their test names, not tested
again here.
"""

import contextlib
import os
import pathlib
import re
import subprocess
import sys

import pytest

from pytest_helpers import (
    BIN, EXIT_HOST_ERROR, EXIT_NO_KVM, EXIT_USAGE, as_nobody, kvm, needs_root, run)

# The line after a command-line error (never after an error in what the command line points at).
HINT = "Run 'activemm help{}' for {}."


def hint(command):
    if command is None:
        return HINT.format("", "the list of commands")
    return HINT.format(f" {command}", "its usage and flags")


def one_error(r, message, status=EXIT_USAGE, command=False, prefix="activemm: ",
              stdout_empty=True):
    """Asserts `r` failed with `status` and exactly one error line on stderr, starting with
    `prefix` and containing `message`, and no traceback; `command` (a command name, or None for
    the general hint) asks for the hint line after it, False for none. Returns the error line."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    if stdout_empty:
        assert r.stdout == "", r.stdout
    assert "Traceback" not in r.stderr and 'File "' not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    expected = 1 if command is False else 2
    assert len(lines) == expected, r.stderr
    assert lines[0].startswith(prefix), r.stderr
    assert message in lines[0], (message, r.stderr)
    assert lines[0].isprintable() and lines[0].isascii(), r.stderr  # one line of plain text
    if command is not False:
        assert lines[1] == hint(command), r.stderr
    else:
        assert "activemm help" not in r.stderr and "--help" not in r.stderr, r.stderr
    return lines[0]


def listing(folder):
    """The names in `folder`, sorted: what a failed command must leave as it was."""
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


@contextlib.contextmanager
def tmpfs(path, options):
    """A tmpfs mounted on `path` (created) for the block; skips the test where mounting is not
    allowed (not root, or no CAP_SYS_ADMIN)."""
    needs_root()
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(folder):
    """Fills the file system of `folder` to the last byte (a file `filler`)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- scenario files -----------------------------------------------------------------------------

def scenario(steps, head='"version": 1, "name": "t", "cpus": 2'):
    return '{%s, "steps": [%s]}' % (head, steps)


SET_UP_A = '{"op": "spawn", "task": "A", "pages": 2}, {"op": "run", "cpu": 0, "task": "A"}'
SET_UP_K = '{"op": "kthread", "task": "K"}, {"op": "run", "cpu": 0, "task": "K"}'

SCENARIO_ERRORS = {
    "wrong-type": (scenario('{"op": "spawn", "task": "A", "pages": "4"}'),
                   "step 0 (spawn): field 'pages' must be an integer, got string \"4\""),
    "wrong-type-top-level": (
        scenario('{"op": "kthread", "task": "K"}', '"version": 1, "name": "t", "cpus": "2"'),
        "field 'cpus' must be an integer, got string \"2\""),
    "unknown-field": ('{"version": 1, "name": "t", "cpus": 2, "stpes": []}',
                      "unknown field 'stpes' (a scenario takes: version, name, cpus, lazy_tlb, "
                      "steps)"),
    "duplicate-field": (scenario('{"op": "spawn", "task": "A", "pages": 2, "pages": 3}'),
                        "step 0 (spawn): duplicate field 'pages'"),
    "unsupported-version": (
        scenario('{"op": "kthread", "task": "K"}', '"version": 2, "name": "t", "cpus": 2'),
        "unsupported version 2: this activemm reads version 1"),
    "zero-cpus": (
        scenario('{"op": "kthread", "task": "K"}', '"version": 1, "name": "t", "cpus": 0'),
        "field 'cpus' is 0, must be 1..64"),
    "not-an-object": ("[1, 2]", "the scenario must be a JSON object, got array [1,2]"),
    "no-steps": (scenario(""), "field 'steps' is empty: a scenario needs steps"),
    "task-used-after-exit": (
        scenario(SET_UP_A + ', {"op": "exit", "task": "A"}, {"op": "run", "cpu": 1, "task": "A"}'),
        "step 3 (run): task 'A' has exited"),
    "task-created-twice": (scenario('{"op": "spawn", "task": "A"}, {"op": "kthread", "task": "A"}'),
                           "step 1 (kthread): task 'A' already exists (a task name can be created "
                           "only once)"),
    "unbalanced-unuse_mm": (scenario(SET_UP_K + ', {"op": "unuse_mm", "task": "K"}'),
                            "step 2 (unuse_mm): kernel thread 'K' is not using an mm"),
    "use_mm-twice": (
        scenario('{"op": "spawn", "task": "A"}, ' + SET_UP_K +
                 ', {"op": "use_mm", "task": "K", "mm": "A"}, {"op": "use_mm", "task": "K", '
                 '"mm": "A"}'),
        "step 4 (use_mm): kernel thread 'K' is already using mm 'A'"),
    "use_mm-of-init_mm": (
        scenario(SET_UP_K + ', {"op": "use_mm", "task": "K", "mm": "init_mm"}'),
        "step 2 (use_mm): use_mm of mm 'init_mm': kthread_use_mm takes a user mm"),
    "munmap-more-than-mapped": (scenario(SET_UP_A + ', {"op": "munmap", "task": "A", "pages": 3}'),
                                "step 2 (munmap): munmap of 3 pages: mm 'A' has only 2 mapped"),
    "bad-prot": (scenario(SET_UP_A + ', {"op": "mprotect", "task": "A", "prot": "x"}'),
                 "step 2 (mprotect): field 'prot' must be \"r\" or \"rw\", got string \"x\""),
    "unknown-counter": (scenario('{"op": "counters", "cr3_wirtes": 1}'),
                        "step 0 (counters): unknown counter 'cr3_wirtes' (counters: "
                        "context_switches,"),
    "parallel-lists-share-a-task": (
        scenario('{"op": "spawn", "task": "A"}, {"op": "parallel", "steps": {"0": [{"op": "run", '
                 '"cpu": 0, "task": "A"}], "1": [{"op": "run", "cpu": 1, "task": "A"}]}}'),
        "step 1 (parallel): CPU 1's step 0 (run): task 'A' is running on CPU 0"),
    "invalid-json-position": (
        '{\n  "version": 1,\n  "name": "t",\n  "cpus": 2,\n  "steps": [}\n',
        "invalid JSON: line 5, column 13: syntax error while parsing value - unexpected '}'"),
    "empty-file": ("", "empty: a scenario is a JSON object (docs/scenarios.md)"),
}


@pytest.mark.parametrize("case", SCENARIO_ERRORS)
def test_scenario_file_errors(tmp_path, case):
    text, message = SCENARIO_ERRORS[case]
    f = tmp_path / "s.json"
    f.write_text(text)
    r = run("run", str(f), f"--json={tmp_path / 'out.json'}")
    one_error(r, f"activemm: {f}: {message}")
    assert listing(tmp_path) == ["s.json"]


def test_binary_garbage_as_a_scenario_is_one_line_of_text(tmp_path):
    f = tmp_path / "s.json"
    f.write_bytes(bytes(range(0x80, 0x100)) * 4)
    r = subprocess.run([BIN, "run", str(f)], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    # The raw bytes never reach the terminal: the message is ASCII, the byte read escaped.
    r = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode("ascii"),
                                    r.stderr.decode("ascii"))
    one_error(r, f"{f}: invalid JSON: line 1, column 1: syntax error while parsing value - "
                 "invalid literal; last read: '\\x80' (at byte 1)")


def test_parallel_block_longer_than_the_window(tmp_path):
    # A program of any length streams through the guest's window (docs/architecture.md); a
    # parallel block must be whole in it when it starts.
    lst = ", ".join('{"op": "run", "cpu": 0, "task": "K"}' if i % 2 == 0 else
                    '{"op": "idle", "cpu": 0}' for i in range(4096))
    f = tmp_path / "s.json"
    f.write_text(scenario('{"op": "kthread", "task": "K"}, '
                          '{"op": "parallel", "steps": {"0": [' + lst + ']}}'))
    one_error(run("run", str(f)), f"{f}: step 1 (parallel): the block's lists make 4096 model "
                                  "steps; at most 4095 run in one block")


def test_cpus_flag_below_the_cpus_a_file_uses(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(scenario('{"op": "kthread", "task": "K"}, {"op": "run", "cpu": 1, "task": "K"}'))
    one_error(run("run", str(f), "--cpus=1"),
              f"{f}: step 1 (run): field 'cpu': CPU 1 is out of range: the run has 1 CPU (0..0; "
              "--cpus 1 overrides the file's \"cpus\")")


@pytest.mark.parametrize("kind", ["a-folder", "through-a-file"])
def test_unreadable_scenario_path(tmp_path, kind):
    if kind == "a-folder":
        path = tmp_path / "s.json"
        path.mkdir()
        why = "Is a directory"
    else:
        (tmp_path / "afile").write_text("")
        path = tmp_path / "afile" / "s.json"
        why = "Not a directory"
    one_error(run("run", str(path)), f"{path}: cannot read the scenario file: {why}")


@pytest.mark.parametrize("name", ["s.json", "s.py"])
def test_scenario_without_read_permission(name):
    # chmod 000 stops everyone but root: run as nobody, with the file where nobody can reach it.
    if os.geteuid() != 0:
        pytest.skip("dropping to nobody needs root; as a user, chmod 000 alone shows it")
    with as_nobody("activemm-errors-") as (public, run_as_nobody):
        f = pathlib.Path(public) / name
        f.write_text("{}")
        f.chmod(0)
        what = "scenario script" if name.endswith(".py") else "scenario file"
        one_error(run_as_nobody("run", str(f)), f"{f}: cannot read the {what}: Permission denied")


# ---- scenario scripts ---------------------------------------------------------------------------

SCRIPT_ERRORS = {
    "raises": ("x = 1\nraise ValueError('boom')\n",
               "the scenario script failed (exit status 1) at line 2: ValueError: boom"),
    "library-rejects-a-step": (
        "from activemm_scenario import Scenario, main\n"
        "s = Scenario('t', cpus=2)\n"
        "s.run(5, 'A')\n"
        "main(s)\n",
        "the scenario script failed (exit status 1) at line 3: ValueError: step 0 (run): cpu must "
        "be a CPU number between 0 and 1 (the scenario has 2 CPUs), got 5"),
    "syntax-error": ("x = 1\ndef (\n",
                     "the scenario script failed (exit status 1) at line 2: SyntaxError: "),
    "exits-with-a-message": ("import sys\nsys.exit('no scenario today')\n",
                             "the scenario script failed (exit status 1): no scenario today"),
    "prints-no-json": ("x = 1\n",
                       "the scenario script printed nothing: it must print the scenario's JSON "
                       "on stdout (activemm_scenario's main(scenario) does)"),
    "prints-text": ("print('hello')\n",
                    "invalid JSON: line 1, column 1: syntax error while parsing value - invalid "
                    "literal; last read: 'h'"),
}


@pytest.mark.parametrize("case", SCRIPT_ERRORS)
def test_scenario_script_errors(tmp_path, case):
    text, message = SCRIPT_ERRORS[case]
    f = tmp_path / "s.py"
    f.write_text(text)
    r = run("run", str(f), f"--json={tmp_path / 'out.json'}")
    one_error(r, f"activemm: {f}: {message}")
    assert listing(tmp_path) == ["s.py"]


def test_a_script_that_works_keeps_its_warnings(tmp_path):
    # stderr of a script that succeeds is passed on: here a warning, then the scenario's own
    # error (exec of a task that never ran), in that order.
    f = tmp_path / "s.py"
    f.write_text("import sys\n"
                 "from activemm_scenario import Scenario, main\n"
                 "print('warning: made up', file=sys.stderr)\n"
                 "main(Scenario('t', cpus=1).spawn('A').exec('A'))\n")
    r = run("run", str(f))
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.splitlines()[0] == "warning: made up", r.stderr
    assert r.stderr.splitlines()[1].startswith(f"activemm: {f}: step 1 (exec)"), r.stderr


# ---- trace folders ------------------------------------------------------------------------------

HEADER = "# tracer: nop\n#\n# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}\n#\n"
SWITCH = ("          <idle>-0       (-------) [{cpu:03d}] d..2.   714.939436: sched_switch: "
          "prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=bash "
          "next_pid={pid} next_prio=120\n")


def switch(cpu=0, pid=6265):
    return SWITCH.format(cpu=cpu, pid=pid)


def good_trace(d):
    d.mkdir()
    (d / "trace.txt").write_text(HEADER.format(n=1, cpus=2) + switch())
    return d


def trace_folder(tmp_path, kind):
    """A trace folder replay must refuse, and the message it names it with (after the path)."""
    d = tmp_path / "trace"
    t = d / "trace.txt"
    if kind == "through-a-file":
        (tmp_path / "afile").write_text("")
        d = tmp_path / "afile" / "trace"
        return d, f"{d}: cannot open the trace folder: Not a directory"
    d.mkdir()
    if kind == "binary-garbage":
        t.write_bytes(bytes(range(256)) * 16)  # 16 newlines in it: 17 lines
        return d, (f"{t}: no events (17 lines: 0 comments, 17 malformed (the first at line 1), "
                   "0 of other event types)")
    if kind == "truncated-lines":
        line = switch()
        t.write_text(HEADER.format(n=2, cpus=2) + line[:80] + "\n" + line[:40] + "\n")
        return d, (f"{t}: no events (6 lines: 4 comments, 2 malformed (the first at line 5), "
                   "0 of other event types)")
    if kind == "cpu-beyond-#P":
        t.write_text(HEADER.format(n=1, cpus=2) + switch(cpu=5))
        return d, (f"{t}: no events on the 2 CPUs of its '#P:2' header: 1 on higher CPUs (5 lines: "
                   "4 comments, 1 malformed (the first at line 5), 0 of other event types)")
    if kind == "cpu-beyond-kernel.txt":
        t.write_text(switch(cpu=5))
        (d / "kernel.txt").write_text("6.1.0\n2\n")
        return d, (f"{t}: no events on the 2 CPUs kernel.txt names (1 lines: 0 comments, "
                   "1 malformed (the first at line 1), 0 of other event types)")
    if kind == "10MB-line":
        t.write_text(HEADER.format(n=1, cpus=2) + switch().rstrip("\n") + "7" * 10_000_000 + "\n")
        return d, (f"{t}: no events (5 lines: 4 comments, 1 malformed (the first at line 5), "
                   "0 of other event types)")
    if kind == "empty-trace":
        t.write_text("")
        return d, f"{t}: no events (0 lines: 0 comments, 0 malformed, 0 of other event types)"
    if kind == "no-cpu-count":
        t.write_text(switch())
        return d, f"{t}: no '#P:N' header line and no CPU count in kernel.txt"
    if kind == "65-cpus-in-kernel.txt":
        t.write_text(switch())
        (d / "kernel.txt").write_text("6.1.0\n65\n")
        return d, f"{d / 'kernel.txt'}: the trace has 65 CPUs; activemm emulates at most 64"
    if kind == "trace.txt-a-folder":
        t.mkdir()
        return d, f"{t}: cannot read: Is a directory"
    if kind == "tgids.txt-a-folder":
        t.write_text(HEADER.format(n=1, cpus=2) + switch())
        (d / "tgids.txt").mkdir()
        return d, f"{d / 'tgids.txt'}: cannot read: Is a directory"
    raise AssertionError(kind)


TRACE_KINDS = ["binary-garbage", "truncated-lines", "cpu-beyond-#P", "cpu-beyond-kernel.txt",
               "10MB-line", "empty-trace", "no-cpu-count", "65-cpus-in-kernel.txt",
               "trace.txt-a-folder", "tgids.txt-a-folder", "through-a-file"]


@pytest.mark.parametrize("kind", TRACE_KINDS)
def test_trace_folder_errors(tmp_path, kind):
    folder, message = trace_folder(tmp_path, kind)
    outs = tmp_path / "outs"
    outs.mkdir()
    before = listing(tmp_path)
    r = run("replay", str(folder), f"--json={outs / 'r.json'}", f"--decisions={outs / 'd.csv'}",
            f"--plan={outs / 'p.csv'}", f"--timeline={outs / 't.json'}")
    one_error(r, f"activemm: {message}")
    assert listing(tmp_path) == before and listing(outs) == []


def test_trace_without_read_permission():
    if os.geteuid() != 0:
        pytest.skip("dropping to nobody needs root; as a user, chmod 000 alone shows it")
    with as_nobody("activemm-errors-") as (public, run_as_nobody):
        d = good_trace(pathlib.Path(public) / "trace")
        (d / "trace.txt").chmod(0)
        one_error(run_as_nobody("replay", str(d)),
                  f"activemm: {d / 'trace.txt'}: cannot open: Permission denied")


# ---- flags --------------------------------------------------------------------------------------

FLAG_ERRORS = {
    "cpus-0": (["run", "--cpus=0"], "--cpus=0: must be between 1 and 64", "run"),
    "mem-1K": (["run", "--mem=1K"], "--mem=1K: expected a size such as 256M or 1G (a multiple of "
               "2M from 16M to 3G)", "run"),
    "mem-1T": (["run", "--mem=1T"], "--mem=1T: expected a size such as 256M or 1G", "run"),
    "mem-17M": (["selftest", "--mem=17M"], "--mem=17M: must be a multiple of 2M from 16M to 3G",
                "selftest"),
    "mem-8M": (["replay", "DIR", "--mem=8M"], "--mem=8M: must be a multiple of 2M from 16M to 3G",
               "replay"),
    "mem-4G": (["cost", "--mem=4G"], "--mem=4G: must be a multiple of 2M from 16M to 3G", "cost"),
    "timeout-nan": (["run", "--timeout=nan"], "--timeout=nan: expected seconds in (0, 3600]",
                    "run"),
    "single-dash": (["run", "-x"], "unknown flag -x (flags start with two dashes)", "run"),
    "bool-value": (["run", "--verbose=maybe"],
                   "--verbose=maybe: expected true or false (or just --verbose)", "run"),
    "pcid-on": (["run", "--pcid=on"], "--pcid=on: expected auto, modeled or off", "run"),
    "stress-verify": (["stress", "--verify=end"],
                      "--verify: not a flag of stress: stress always verifies after every step",
                      "stress"),
    "steps-0": (["stress", "--steps=0"], "--steps=0: must be between 1 and 1000000", "stress"),
    "steps-1000001": (["stress", "--steps=1000001"],
                      "--steps=1000001: must be between 1 and 1000000",
                      "stress"),
    "seed-negative": (["stress", "--seed=-1"], "--seed=-1: expected an integer >= 0", "stress"),
    "explain-negative": (["replay", "DIR", "--explain=-1"],
                         "--explain=-1: must be between 0 and 1000000", "replay"),
    "help-with-a-value": (["run", "--help=x"], "--help takes no value (activemm help COMMAND)",
                          None),
}


@pytest.mark.parametrize("case", FLAG_ERRORS)
def test_flag_errors(tmp_path, case):
    args, message, command = FLAG_ERRORS[case]
    args = [str(good_trace(tmp_path / "trace")) if a == "DIR" else a for a in args]
    one_error(run(*args), f"activemm: {message}", command=command)


def test_stress_without_its_generator(tmp_path):
    env = dict(os.environ, ACTIVEMM_SCRIPTS=str(tmp_path / "nowhere"))
    r = subprocess.run([BIN, "stress", f"--json={tmp_path / 'out.json'}"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    one_error(r, f"activemm: {tmp_path / 'nowhere'}/stress_gen.py not found (set ACTIVEMM_SCRIPTS "
                 "to the project's scripts/ folder)")
    assert listing(tmp_path) == []


# ---- output files: checked before the guest starts ---------------------------------------------

def command_with_output(tmp_path, command, flag, path):
    """The command line of `command` with `--flag=path` (replay on a good trace folder)."""
    args = [command]
    if command == "replay":
        args.append(str(good_trace(tmp_path / "trace")))
    return args + [f"--{flag}={path}"]


OUTPUTS = [("run", "json"), ("run", "timeline"), ("compare", "json"), ("stress", "json"),
           ("replay", "decisions"), ("replay", "plan"), ("replay", "json"), ("cost", "json")]


@pytest.mark.parametrize("kind", ["missing-folder", "under-a-file", "a-folder"])
@pytest.mark.parametrize("command, flag", OUTPUTS, ids=lambda v: v)
def test_unwritable_output_is_refused_before_the_run(tmp_path, command, flag, kind):
    if kind == "missing-folder":
        path, why = tmp_path / "no-such-dir" / "out", f"the folder {tmp_path / 'no-such-dir'} " \
            "does not exist"
    elif kind == "under-a-file":
        (tmp_path / "afile").write_text("")
        path, why = tmp_path / "afile" / "out", f"{tmp_path / 'afile'} is not a folder"
    else:
        path = tmp_path / "out"
        path.mkdir()
        why = f"{path} is a folder; name a file"
    before = listing(tmp_path)
    r = run(*command_with_output(tmp_path, command, flag, path), "--kvm=/nonexistent")
    # Refused before /dev/kvm is even opened (--kvm names none): exit 2, not 5.
    one_error(r, f"activemm: --{flag}={path}: {why}")
    assert listing(tmp_path) == sorted(set(before) | ({"trace"} if command == "replay" else set()))
    if kind == "a-folder":
        assert listing(path) == []


@pytest.mark.parametrize("command, flag", [("run", "json"), ("replay", "timeline")])
def test_output_on_a_read_only_file_system(tmp_path, command, flag):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        path = ro / "out.json"
        r = run(*command_with_output(tmp_path, command, flag, path), "--kvm=/nonexistent")
        one_error(r, f"activemm: --{flag}={path}: cannot write in {ro}: Read-only file system")


def test_two_outputs_naming_the_same_file(tmp_path):
    out = tmp_path / "same.json"
    r = run("run", f"--json={out}", f"--timeline={out}", "--kvm=/nonexistent")
    one_error(r, f"activemm: --timeline={out}: --json names the same file")
    assert listing(tmp_path) == []


def test_a_full_disk_at_the_end_of_a_run_leaves_no_file(tmp_path, kvm):
    # A full disk cannot be seen coming: the report is written at the end, whole or not at all.
    with tmpfs(tmp_path / "full", "size=64k") as full:
        fill(full)
        out = full / "r.json"
        r = run("run", f"--json={out}")
        one_error(r, f"activemm: writing {out}: No space left on device", stdout_empty=False)
        assert listing(full) == ["filler"]  # no r.json, no r.json.tmp.PID


# ---- capture output folders ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["under-a-file", "read-only"])
def test_capture_output_folder_that_cannot_be_made(tmp_path, kind):
    if kind == "under-a-file":
        (tmp_path / "afile").write_text("")
        out = tmp_path / "afile" / "sub" / "out"
        message = f"{out}: {tmp_path / 'afile'} is not a folder: name a new folder"
        r = run("capture", str(out), "--", "/bin/true")
    else:
        with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
            out = ro / "sub" / "out"
            message = f"{out}: cannot create it in {ro}: Read-only file system"
            r = run("capture", str(out), "--", "/bin/true")
    # Refused before tracefs is touched, as a user's mistake: exit 2.
    one_error(r, f"activemm capture: {message}", prefix="activemm capture: ")


def fake_tracefs(root):
    """tracefs's control files as a fresh tracefs has them (as in test_capture.py)."""
    t = root / "tracefs"
    (t / "options").mkdir(parents=True)
    (t / "trace").write_text("")
    (t / "tracing_on").write_text("1\n")
    (t / "buffer_size_kb").write_text("1408\n")
    (t / "options" / "record-tgid").write_text("0\n")
    for e in ["sched/sched_switch", "sched/sched_process_fork", "sched/sched_process_exec",
              "sched/sched_process_exit", "tlb/tlb_flush"]:
        (t / "events" / e).mkdir(parents=True)
        (t / "events" / e / "enable").write_text("0\n")
    return t


def test_capture_on_a_full_disk_leaves_nothing(tmp_path):
    needs_root()
    t = fake_tracefs(tmp_path)
    with tmpfs(tmp_path / "full", "size=64k") as full:
        fill(full)
        out = full / "out"
        # The command plays the kernel: it fills `trace` with more than the disk has room for.
        r = run("capture", str(out), f"--tracefs={t}", "--", "/bin/sh", "-c",
                f"yes sched_switch | head -c 200000 > {t}/trace")
        assert r.returncode == EXIT_HOST_ERROR, r.stderr  # an I/O error, not the user's input
        errors = [line for line in r.stderr.splitlines() if "No space" in line]
        assert errors == [f"activemm capture: writing {out}/trace.txt: No space left on device"], \
            r.stderr
        assert r.stderr.splitlines()[-1] == errors[0], r.stderr
        assert listing(full) == ["filler"]  # no OUT_DIR, no temporary folder
    assert (t / "tracing_on").read_text().strip() == "1"  # tracefs put back


# ---- KVM ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["run", "compare", "stress", "replay", "cost"])
def test_missing_kvm_device_for_every_guest_command(tmp_path, command):
    args = [command] + ([str(good_trace(tmp_path / "trace"))] if command == "replay" else [])
    out = tmp_path / "out.json"
    r = run(*args, f"--json={out}", "--kvm=/nonexistent")
    one_error(r, "activemm: /nonexistent does not exist: this machine offers no KVM. Load the "
                 "module (modprobe kvm_intel or kvm_amd)", status=EXIT_NO_KVM)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["a-file", "a-folder"])
def test_kvm_path_that_is_no_kvm_device(tmp_path, kind):
    dev = tmp_path / "kvm"
    if kind == "a-file":
        dev.write_text("")
        message = f"{dev} is not a KVM device (KVM_GET_API_VERSION: Inappropriate ioctl for device)"
    else:
        dev.mkdir()
        message = f"cannot open {dev}: Is a directory"
    one_error(run("selftest", f"--kvm={dev}"), f"activemm: {message}", status=EXIT_NO_KVM)


def test_trace_too_big_for_the_guest_names_the_line(tmp_path, kvm):
    # 4094 tasks fit besides the 2 idle tasks: the 4095th pid is one too many. Caught while the
    # trace is planned, before the guest runs.
    d = tmp_path / "trace"
    d.mkdir()
    lines = []
    for k in range(4100):
        pid = 10000 + k
        lines.append(switch(pid=pid))
        lines.append(f"            bash-{pid:<6d} ({pid:7d}) [000] d..2.   714.939437: "
                     f"sched_switch: prev_comm=bash prev_pid={pid} prev_prio=120 prev_state=S "
                     "==> next_comm=swapper/0 next_pid=0 next_prio=120\n")
    (d / "trace.txt").write_text(HEADER.format(n=len(lines), cpus=2) + "".join(lines))
    r = run("replay", str(d), f"--json={tmp_path / 'r.json'}")
    line = one_error(r, f"activemm: {d / 'trace.txt'}: line ")
    m = re.search(r": line (\d+): more than 4094 tasks: the guest has no room for more$", line)
    assert m, line
    assert "next_pid=14094 " in (d / "trace.txt").read_text().splitlines()[int(m.group(1)) - 1]
    assert listing(tmp_path) == ["trace"]
