#!/usr/bin/python3
"""Regenerates the sample outputs in docs/*.md from real runs, so that they cannot go stale.

A sample is a fenced block between two markers that name the activemm arguments behind it:

    <!-- sample: run -->
    ```
    (what `activemm run` printed)
    ```
    <!-- /sample -->

`<!-- sample: ARGS | json -->` shows the file the run wrote with --json instead of its output
(abridged: the first CPU of `cpus` only); `| head N` keeps the first N lines.

    doc_samples.py [--bin ACTIVEMM] [--check] DOC.md...

Without --check the files are rewritten in place (whole or not at all). With --check nothing is
written: the exit status is 1 and a diff is printed when a sample differs from a fresh run in
more than what differs between runs and hosts (the `host:` line and host object, run times).
Runs guests: needs a usable /dev/kvm (scripts/nested_kvm/run.sh where there is none).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = re.compile(r"(<!-- sample: (?P<spec>[^>]*?) -->\n```[a-z]*\n)(?P<body>.*?)(```\n"
                    r"<!-- /sample -->)", re.S)


def abridge(report: dict[str, Any]) -> str:
    """The --json report with `cpus` cut to its first entry and a "..." after it."""
    if isinstance(report.get("cpus"), list) and len(report["cpus"]) > 1:
        report["cpus"] = report["cpus"][:1] + ["..."]
    # KVM's statistics: dozens, named and counted by each host's KVM; two of them show the kind.
    run = report.get("run")
    if isinstance(run, dict) and isinstance(run.get("kvm"), dict):
        run["kvm"] = {k: v for k, v in run["kvm"].items() if k in ("exits", "halt_exits")}
        run["kvm"]["..."] = "..."
    return json.dumps(report, indent=2) + "\n"


def run_sample(binary: str, spec: str) -> str:
    """What the sample `spec` ("ARGS[ | json][ | head N]") shows, from a fresh run."""
    parts = [p.strip() for p in spec.split("|")]
    args, filters = shlex.split(parts[0]), parts[1:]
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "report.json")
        want_json = "json" in filters
        argv = [binary] + args + ([f"--json={out_json}"] if want_json else [])
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, env=dict(os.environ, CI="true"))
        if r.returncode != 0:
            raise RuntimeError(f"activemm {parts[0]} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        text = abridge(json.load(open(out_json))) if want_json else r.stdout
    for f in filters:
        if f.startswith("head "):
            text = "".join(text.splitlines(keepends=True)[:int(f.split()[1])])
    return text


# What differs between two runs of the same command, or between hosts: not a stale sample.
VOLATILE = [
    (re.compile(r"^host: .*$", re.M), "host: HOST"),
    (re.compile(r"executed in [0-9.]+ s"), "executed in T s"),
    (re.compile(r'"seconds": [0-9.e+-]+'), '"seconds": T'),
    (re.compile(r'"verify_seconds": [0-9.e+-]+'), '"verify_seconds": T'),
    (re.compile(r'"host": \{.*?\n  \}', re.S), '"host": HOST'),
    (re.compile(r'"kvm": \{.*?\n    \}', re.S), '"kvm": KVM'),
    # A quirk of emulated hosts (docs/hosts.md), counted when it happens.
    (re.compile(r'"interrupts_in_sti_shadow": \d+'), '"interrupts_in_sti_shadow": N'),
    # What the boot probe sees of the host's TLB (docs/hosts.md): a property of the host kind.
    (re.compile(r"^TLB: .*$", re.M), "TLB: HOST"),
    (re.compile(r'"stale_tlb": "[a-z ]+"'), '"stale_tlb": HOST'),
    (re.compile(r"^host quirk: .*\n", re.M), ""),
    # `run` with --pcid=auto loads real PCIDs where the host has them: the same decisions.
    (re.compile(r"PCID hardware \("), "PCID modeled ("),
    (re.compile(r'"pcid": "hardware"'), '"pcid": "modeled"'),
]


def without_real_pcids(text: str) -> str:
    """`compare` on a host with PCID runs real PCIDs too: a first column group and three verdict
    lines that a sample made without them lacks. Both are dropped (real PCIDs make the modeled
    decisions, so the rest is the same)."""
    lines = text.splitlines(keepends=True)
    group = next((i for line in lines for i, seg in enumerate(line.split(" | "))
                  if seg.strip() == "PCID hardware"), None)
    out = []
    for line in lines:
        if re.match(r"lazy \w+, PCID hardware: ", line):
            continue
        segs = line.rstrip("\n").split(" | ")
        if group is not None and len(segs) > group:
            line = " | ".join(segs[:group] + segs[group + 1:]).rstrip() + "\n"
        out.append(line)
    return "".join(out)


def normalise(text: str) -> str:
    for pattern, repl in VOLATILE:
        text = pattern.sub(repl, text)
    # Trailing blanks of the table's last column are layout, not content.
    return "".join(line.rstrip() + "\n" for line in without_real_pcids(text).splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("ACTIVEMM_BIN") or
                    os.path.join(ROOT, "build", "vmm", "activemm"))
    ap.add_argument("--check", action="store_true",
                    help="compare with fresh runs instead of rewriting; exit 1 when stale")
    ap.add_argument("docs", nargs="+")
    a = ap.parse_args(argv)
    stale = 0
    for doc in a.docs:
        text = open(doc).read()
        samples = list(SAMPLE.finditer(text))
        if not samples:
            print(f"doc_samples: {doc}: no <!-- sample: ... --> blocks", file=sys.stderr)
            return 2
        out, pos = [], 0
        for m in samples:
            fresh = run_sample(a.bin, m.group("spec"))
            out += [text[pos:m.start("body")], fresh]
            pos = m.end("body")
            if a.check and normalise(fresh) != normalise(m.group("body")):
                stale += 1
                print(f"doc_samples: {doc}: sample '{m.group('spec')}' is stale:")
                sys.stdout.writelines(difflib.unified_diff(
                    m.group("body").splitlines(keepends=True), fresh.splitlines(keepends=True),
                    "in the doc", "a fresh run"))
        out.append(text[pos:])
        if not a.check:
            tmp = f"{doc}.tmp.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write("".join(out))
            os.replace(tmp, doc)
            print(f"doc_samples: {doc}: {len(samples)} samples regenerated")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
