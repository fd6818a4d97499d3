#!/usr/bin/python3
"""The benchmark: where the time of a replayed switch goes, on the host it runs on.

    /usr/bin/python3 scripts/bench.py [--activemm PATH] [--runs N] [--quick]
                                      [--json OUT.json] [--md docs/bench.md] [--plots DIR]
                                      [--compare OLD.json] [--baseline OLD_ACTIVEMM]

One run measures, on whatever host it finds (software KVM, nested KVM under QEMU, hardware
KVM; the kind `activemm` reports):

  replay      each shared trace (../shared/traces/NAME) replayed --runs times (default 5):
              the median guest time, the real-time factor (guest time / traced time), switches
              replayed per second, ring-0 instructions (KVM's insn_emulation, where ring 0 is
              emulated) and VM exits by kind per guest step, the host's parse and plan rates
              (events per second) and the peak RSS of the process; in the same runs, one step
              at a time (--parallel=off) and, with --baseline, an older activemm binary
              (alternating, so that the host's drift falls on each alike)
  breakdown   one more replay of each trace with --profile: the share of vCPU time in the
              modeled kernel, the step loop, its records, interrupts, entering and leaving
              ring 3, ring 3, halted and the host (vmm/kvm/guest_profile.h), and from it the
              ring-0 instructions per step in each (instructions x share of the sampled ring-0
              time: an estimate by sampling, exact in total)
  floor       `activemm cost`: the instructions and cycles of each modeled switch case, and of
              a bare CR3 write and a bare stack switch (the floor each figure is a multiple of)
  scale       `activemm selftest` and `activemm stress` at 1, 2, 4, ..., 64 vCPUs: wall time,
              time and exits per step
  verifier    the host's time per full verification with 10, 100, 1,000 and 4,095 live mms
              (a generated scenario of that many processes; 4,095 is every mm slot the guest
              has, kMaxMms - 1)

It writes OUT.json (default build/bench/bench-KIND.json), replaces the section of docs/bench.md
for this host kind (the other kinds' sections are kept) and draws two PNGs beside it
(docs/bench/KIND-realtime.png, KIND-breakdown.png). With --compare OLD.json it adds the ratio
new/old of every figure both have (ratios, so that a noisy machine still compares). It is not
part of the test command: its figures are timings, and timings are not tests.

Every file is written whole or not at all (a temporary file renamed into place). Exit status:
0 done, 2 bad arguments or no shared traces, 3 an activemm run failed (its output is shown).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT.parent / "shared" / "traces"
BUCKETS = ["modeled kernel", "step loop", "step records", "interrupts and traps",
           "entering and leaving ring 3", "ring 3", "halted, waiting", "in the host",
           "other guest code"]
# The buckets whose code runs in ring 0 of the guest (where kvm_pvm counts instructions).
RING0 = ["modeled kernel", "step loop", "step records", "interrupts and traps",
         "entering and leaving ring 3", "other guest code"]
EXIT_KINDS = ["exits", "io_exits", "halt_exits", "irq_exits", "irq_window_exits",
              "irq_injections", "signal_exits", "request_irq_exits", "nmi_window_exits",
              "insn_emulation_fail"]


class RunFailed(Exception):
    pass


def run(cmd: list[str], timeout: float = 3600) -> tuple[str, float]:
    """Runs cmd; returns its stdout and wall seconds. RunFailed unless it exits 0."""
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RunFailed(f"{' '.join(cmd)}: no end after {timeout} s") from e
    if p.returncode != 0:
        raise RunFailed(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p.stdout, time.monotonic() - start


def run_rss(cmd: list[str], timeout: float = 3600) -> tuple[str, float, int]:
    """Like run(), with the process's own peak RSS (KiB) from wait4."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RunFailed(f"{' '.join(cmd)}: no end after {timeout} s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        text, etext = out.read(), err.read()
    if proc.returncode != 0:
        raise RunFailed(f"{' '.join(cmd)} exited {proc.returncode}:\n{text[-2000:]}{etext[-2000:]}")
    return text, wall, usage.ru_maxrss


def load_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def per_step(kvm: dict, steps: int, ring0_emulated: bool) -> dict:
    """KVM's statistics per step; insn_emulation only where it counts every ring-0 instruction
    (elsewhere it counts the few instructions KVM emulates, such as MMIO)."""
    kinds = EXIT_KINDS + (["insn_emulation"] if ring0_emulated else [])
    return {k: kvm[k] / steps for k in kinds if k in kvm and steps}


def ring0_emulated(host: dict) -> bool:
    return host.get("kind") == "software"


def guest_seconds(j: dict) -> float:
    """A replay JSON's guest time (older binaries have no `phases`)."""
    return j["phases"]["guest_seconds"] if "phases" in j else j["guest"]["seconds"]


def bench_replay(activemm: str, trace: Path, runs: int, tmp: Path,
                 baseline: str | None) -> dict:
    """Each run replays the trace as activemm does by default (parallel blocks), then one step
    at a time (--parallel=off), then with the baseline binary if given: alternating, so that a
    drift of the host's speed falls on all of them alike."""
    rows, serial, base = [], [], []
    for i in range(runs):
        out_json = tmp / f"{trace.name}-{i}.json"
        _, wall, rss = run_rss([activemm, "replay", str(trace), f"--json={out_json}"])
        rows.append((load_json(out_json), wall, rss))
        out_json = tmp / f"{trace.name}-{i}-serial.json"
        _, wall = run([activemm, "replay", str(trace), "--parallel=off", f"--json={out_json}"])
        serial.append((load_json(out_json), wall))
        if baseline:
            out_json = tmp / f"{trace.name}-{i}-baseline.json"
            _, wall = run([baseline, "replay", str(trace), f"--json={out_json}"])
            base.append((load_json(out_json), wall))
    guest = sorted(rows, key=lambda r: guest_seconds(r[0]))
    j, _, _ = guest[len(guest) // 2]  # the median run, for the per-step figures
    ph = j["phases"]
    steps = j["guest"]["steps_done"]
    med = lambda f, rs=rows: statistics.median(f(r) for r in rs)  # noqa: E731
    guest_s = med(lambda r: guest_seconds(r[0]))
    serial_s = med(lambda r: guest_seconds(r[0]), serial)
    out = {
        "trace": trace.name,
        "runs": runs,
        "switches": j["score"]["switches"],
        "events": j["input"]["events"],
        "steps": steps,
        "steps_in_parallel_blocks": j["input"].get("steps_in_parallel_blocks", 0),
        "traced_seconds": ph["traced_seconds"],
        "guest_seconds": guest_s,
        "guest_seconds_min": min(guest_seconds(r[0]) for r in rows),
        "guest_seconds_max": max(guest_seconds(r[0]) for r in rows),
        "wall_seconds": med(lambda r: r[1]),
        "serial_guest_seconds": serial_s,
        "serial_wall_seconds": med(lambda r: r[1], serial),
        "parallel_speedup": serial_s / guest_s,
        "realtime_factor": guest_s / ph["traced_seconds"] if ph["traced_seconds"] > 0 else None,
        "switches_per_second": j["score"]["switches"] / guest_s,
        "us_per_step": 1e6 * guest_s / steps,
        "per_step": per_step(j["guest"]["kvm"], steps, ring0_emulated(j["host"])),
        "parse_events_per_second": j["input"]["events"] / med(lambda r: r[0]["phases"]["parse_seconds"]),
        "plan_events_per_second": j["input"]["events"] / med(lambda r: r[0]["phases"]["plan_seconds"]),
        "peak_rss_mib": med(lambda r: r[2]) / 1024,
        "precision": j["score"]["precision"],
        "recall": j["score"]["recall"],
        "host": j["host"],
    }
    if base:
        base_s = med(lambda r: guest_seconds(r[0]), base)
        out.update({"baseline_guest_seconds": base_s,
                    "baseline_wall_seconds": med(lambda r: r[1], base),
                    "speedup_over_baseline": base_s / guest_s,
                    "wall_speedup_over_baseline": med(lambda r: r[1], base) / out["wall_seconds"]})
    return out


def verifier_scenario(mms: int) -> str:
    """`mms` processes, each its own mm with one data page, then five full verifications."""
    steps = [{"op": "spawn", "task": f"P{i}", "pages": 1} for i in range(mms)]
    steps += [{"op": "checkpoint"} for _ in range(5)]
    return json.dumps({"version": 1, "name": f"{mms} live mms", "cpus": 1, "steps": steps})


def bench_verifier(activemm: str, counts: list[int], tmp: Path) -> list[dict]:
    """The host's time per full verification (read the model, check every rule and page
    table) with `n` live mms: the run's verify_seconds over its verifications."""
    rows = []
    for n in counts:
        path = tmp / f"verifier-{n}.json"
        path.write_text(verifier_scenario(n))
        out_json = tmp / f"verifier-{n}-report.json"
        run([activemm, "run", str(path), "--mem=1G", f"--json={out_json}"])
        r = load_json(out_json)["run"]
        rows.append({"live_mms": n, "verifications": r["verifications"],
                     "verify_seconds": r["verify_seconds"],
                     "ms_per_verification": 1e3 * r["verify_seconds"] / r["verifications"]})
    return rows


def bench_breakdown(activemm: str, trace: Path, hz: int, tmp: Path) -> dict:
    out_json = tmp / f"{trace.name}-profile.json"
    run([activemm, "replay", str(trace), f"--profile={hz}", f"--json={out_json}"])
    j = load_json(out_json)
    g = j["guest"]
    p = g["profile"]
    steps = g["steps_done"]
    b = p["buckets"]
    samples = p["samples"]
    ring0 = sum(b[k] for k in RING0)
    insn = g["kvm"].get("insn_emulation", 0) / steps
    # vCPU time per step in each bucket: samples / hz is vCPU seconds.
    us = {k: 1e6 * b[k] / hz / steps for k in BUCKETS}
    counted = ring0_emulated(j["host"]) and insn > 0 and ring0 > 0
    return {
        "trace": trace.name,
        "hz": hz,
        "samples": samples,
        "share": {k: b[k] / samples for k in BUCKETS},
        "vcpu_us_per_step": us,
        "ring0_insn_per_step": {k: insn * b[k] / ring0 for k in RING0} if counted else None,
        "insn_per_step": insn if counted else None,
        "top_functions": sorted(p["functions"].items(), key=lambda kv: -kv[1])[:12],
    }


def bench_floor(activemm: str, tmp: Path, iterations: int) -> dict:
    out_json = tmp / "cost.json"
    run([activemm, "cost", "--lazy-tlb=on", f"--iterations={iterations}", f"--json={out_json}"])
    j = load_json(out_json)
    cases = {}
    for c in j["cases"]:
        cases[c["title"]] = {
            "instructions": c["instructions"]["median"] if j["instructions_available"] else None,
            "cycles": c["cycles"]["median"],
        }
    for f in j["floor"]:
        if f["lazy_tlb"] == "on":
            cases[f["title"] + " (the floor)"] = {"instructions": f["instructions"],
                                                  "cycles": f["cycles"]}
    overhead = {m["lazy_tlb"]: m for m in j["marker_overhead"]}
    return {"tsc_khz": j["tsc_khz"], "marker_overhead": overhead, "cases": cases}


def bench_scale(activemm: str, cpus_list: list[int], stress_steps: int, tmp: Path) -> list[dict]:
    rows = []
    for n in cpus_list:
        _, self_wall = run([activemm, "selftest", f"--cpus={n}"])
        out_json = tmp / f"stress-{n}.json"
        _, wall = run([activemm, "stress", f"--cpus={n}", "--seed=1",
                          f"--steps={stress_steps}", f"--json={out_json}"])
        report = load_json(out_json)
        j = report["run"]
        steps = j["steps_done"]
        rows.append({
            "cpus": n,
            "selftest_wall_seconds": self_wall,
            "stress_steps": steps,
            "stress_wall_seconds": wall,
            "stress_guest_seconds": j["seconds"],
            "stress_us_per_step": 1e6 * j["seconds"] / steps,
            "stress_per_step": per_step(j.get("kvm", {}), steps,
                                        ring0_emulated(report.get("host", {}))),
        })
    return rows


def flatten(d, prefix=""):
    """Every number of a result, by its path: what --compare pairs up."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            key = v.get("trace") or v.get("cpus") if isinstance(v, dict) else i
            out.update(flatten(v, f"{prefix}/{key}"))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix] = float(d)
    return out


def compare(new: dict, old: dict) -> dict:
    a, b = flatten(new), flatten(old)
    return {k: a[k] / b[k] for k in sorted(a.keys() & b.keys()) if b[k] != 0}


def fmt(x, digits=1):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def markdown(res: dict, cmdline: str) -> str:
    kind = res["host_kind"]
    L = [f"## {kind}", "",
         f"Measured {res['date']} on `{res['host_summary']}`, {res['host_cpus']} host CPUs, with:",
         "", f"    {cmdline}", ""]
    L += ["### Replay of the shared traces", "",
          "| trace | switches | steps (in parallel blocks) | traced | guest time (median, "
          "min-max) | real-time factor | switches/s | us/step | ring-0 insn/step | exits/step "
          "| parse events/s | plan events/s | peak RSS |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["replay"]:
        ps = r["per_step"]
        L.append(f"| `{r['trace']}` | {r['switches']:,} | {r['steps']:,} "
                 f"({r['steps_in_parallel_blocks']:,}) | "
                 f"{r['traced_seconds']:.3f} s | {r['guest_seconds']:.2f} s "
                 f"({r['guest_seconds_min']:.2f}-{r['guest_seconds_max']:.2f}) | "
                 f"{fmt(r['realtime_factor'])} | {fmt(r['switches_per_second'], 0)} | "
                 f"{fmt(r['us_per_step'], 0)} | {fmt(ps.get('insn_emulation'))} | "
                 f"{fmt(ps.get('exits'), 2)} | {fmt(r['parse_events_per_second'], 0)} | "
                 f"{fmt(r['plan_events_per_second'], 0)} | {r['peak_rss_mib']:.0f} MiB |")
    L += ["", "The same runs, guest time (median) by how the program ran: as activemm replays by "
          "default (independent switches of different CPUs in parallel blocks), one step at a "
          "time (`--parallel=off`)" + (", and the baseline binary" if res.get("baseline") else "")
          + ":", ""]
    head = "| trace | default | one step at a time | speed-up |"
    if res.get("baseline"):
        head += " baseline | speed-up over the baseline (guest time) | (whole process) |"
    L += [head, "|---" * (head.count("|") - 1) + "|"]
    for r in res["replay"]:
        row = (f"| `{r['trace']}` | {r['guest_seconds']:.2f} s | "
               f"{r['serial_guest_seconds']:.2f} s | {r['parallel_speedup']:.2f} |")
        if "baseline_guest_seconds" in r:
            row += (f" {r['baseline_guest_seconds']:.2f} s | {r['speedup_over_baseline']:.2f} | "
                    f"{r['wall_speedup_over_baseline']:.2f} |")
        L.append(row)
    L += ["", "Exits per step by kind (KVM's vCPU statistics, summed over the vCPUs):", "",
          "| trace | " + " | ".join(EXIT_KINDS) + " |",
          "|---|" + "---|" * len(EXIT_KINDS)]
    for r in res["replay"]:
        L.append(f"| `{r['trace']}` | " +
                 " | ".join(fmt(r["per_step"].get(k), 3) for k in EXIT_KINDS) + " |")
    L += ["", "### Where a step's time goes (`--profile`)", "",
          "vCPU time per step in each part, in microseconds (summed over the vCPUs: while one "
          "CPU runs a step the others are mostly halted), and where ring 0 is emulated the "
          "ring-0 instructions per step in each (the total is KVM's exact count; the split "
          "follows the sampled shares):", "",
          "| trace | " + " | ".join(BUCKETS) + " |", "|---|" + "---|" * len(BUCKETS)]
    for b in res["breakdown"]:
        L.append(f"| `{b['trace']}` us | " +
                 " | ".join(fmt(b["vcpu_us_per_step"][k], 0) for k in BUCKETS) + " |")
        if b["ring0_insn_per_step"]:
            L.append(f"| `{b['trace']}` insn | " +
                     " | ".join(fmt(b["ring0_insn_per_step"].get(k), 0) if k in RING0 else ""
                                for k in BUCKETS) + " |")
    f = res["floor"]
    L += ["", "### The floor (`activemm cost`, lazy TLB on)", "",
          f"Guest TSC {f['tsc_khz'] / 1000:.0f} MHz; the markers' own cost, subtracted: "
          f"{fmt(f['marker_overhead'].get('on', {}).get('instructions'))} instructions, "
          f"{fmt(f['marker_overhead'].get('on', {}).get('cycles'), 0)} cycles.", "",
          "| case | ring-0 instructions | cycles (median) |", "|---|---|---|"]
    for name, c in f["cases"].items():
        L.append(f"| {name} | {fmt(c['instructions'])} | {fmt(float(c['cycles']), 0)} |")
    L += ["", "### Scale: vCPUs on this host", "",
          "| vCPUs | selftest wall | stress steps | stress guest time | us/step "
          "| exits/step | ring-0 insn/step |", "|---|---|---|---|---|---|---|"]
    for s in res["scale"]:
        ps = s["stress_per_step"]
        L.append(f"| {s['cpus']} | {s['selftest_wall_seconds']:.2f} s | {s['stress_steps']:,} | "
                 f"{s['stress_guest_seconds']:.2f} s | {fmt(s['stress_us_per_step'], 0)} | "
                 f"{fmt(ps.get('exits'), 2)} | {fmt(ps.get('insn_emulation'))} |")
    L += ["", "### The host's verifier", "",
          "Time per full verification (`checkpoint`: read the model, check every rule, walk "
          "every page table) with this many live mms, one task each:", "",
          "| live mms | verifications | ms per verification |", "|---|---|---|"]
    for v in res["verifier"]:
        L.append(f"| {v['live_mms']:,} | {v['verifications']} | {v['ms_per_verification']:.2f} |")
    if res.get("compare"):
        c = res["compare"]
        L += ["", f"### Against `{res['compare_file']}` (new / old)", "",
              "| figure | ratio |", "|---|---|"]
        keys = [k for k in c if re.search(r"(guest_seconds|us_per_step|insn_emulation|"
                                          r"events_per_second|realtime_factor|ms_per_verification)$", k)]
        for k in keys:
            L.append(f"| {k} | {c[k]:.3f} |")
    L += ["", "Plots: " + ", ".join(f"![]({p})" for p in res["plots"]), ""]
    return "\n".join(L)


def write_atomically(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def update_md(md_path: Path, kind: str, section: str):
    """Replaces this host kind's section of docs/bench.md, keeping the others."""
    head = ("# Benchmarks\n\nWritten by `scripts/bench.py` (docs/bench.md says what each figure "
            "is); one section per host kind, each replaced by the next run on that kind.\n\n")
    text = md_path.read_text() if md_path.exists() else head
    parts = re.split(r"(?m)^(?=## )", text)
    intro, sections = parts[0], parts[1:]
    sections = [s for s in sections if not s.startswith(f"## {kind}\n")]
    sections.append(section.rstrip() + "\n\n")
    sections.sort()
    write_atomically(md_path, (intro + "".join(sections)).encode())


def plots(res: dict, out_dir: Path, kind: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, path: Path) -> Path:
        """Writes the figure whole or not at all (a temporary file renamed into place)."""
        fig.tight_layout()
        buf = tempfile.NamedTemporaryFile(suffix=".png", delete=False, dir=path.parent)
        fig.savefig(buf.name, dpi=110)
        plt.close(fig)
        os.replace(buf.name, path)
        return path

    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    made = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["trace"] for r in res["replay"]]
    ax.bar(names, [r["realtime_factor"] or 0 for r in res["replay"]], color="tab:blue")
    ax.set_ylabel("guest time / traced time")
    ax.set_title(f"Replay real-time factor ({kind})")
    for i, r in enumerate(res["replay"]):
        ax.annotate(f"{r['us_per_step']:.0f} us/step", (i, r["realtime_factor"] or 0),
                    ha="center", va="bottom", fontsize=8)
    made.append(save(fig, out_dir / f"{slug}-realtime.png"))

    fig, ax = plt.subplots(figsize=(9.5, 3.8))
    bottoms = [0.0] * len(res["breakdown"])
    labels = [b["trace"] for b in res["breakdown"]]
    for k in BUCKETS:
        if k in ("halted, waiting",):
            continue
        vals = [b["vcpu_us_per_step"][k] for b in res["breakdown"]]
        ax.barh(labels, vals, left=bottoms, label=k)
        bottoms = [x + y for x, y in zip(bottoms, vals)]
    ax.set_xlabel("vCPU microseconds per step (halted time left out)")
    ax.set_title(f"Where a replayed step goes ({kind})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    made.append(save(fig, out_dir / f"{slug}-breakdown.png"))
    return made


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--activemm", default=os.environ.get("ACTIVEMM_BIN",
                                                         str(ROOT / "build/vmm/activemm")))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true",
                    help="1 run per trace, vCPUs 1/2/4, short stress and cost (a smoke test)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path, default=ROOT / "docs/bench.md")
    ap.add_argument("--plots", type=Path, default=ROOT / "docs/bench")
    ap.add_argument("--compare", type=Path)
    ap.add_argument("--profile-hz", type=int, default=500)
    ap.add_argument("--baseline", help="an older activemm binary to replay each trace with too")
    a = ap.parse_args()
    if a.runs < 1:
        print("bench: --runs must be at least 1", file=sys.stderr)
        return 2
    traces = sorted(p for p in TRACES.glob("*") if (p / "trace.txt").exists())
    if not traces:
        print(f"bench: no traces in {TRACES} (the shared folder beside the repository)",
              file=sys.stderr)
        return 2
    if a.baseline and not os.access(a.baseline, os.X_OK):
        print(f"bench: --baseline {a.baseline} is not an executable", file=sys.stderr)
        return 2
    if not os.access(a.activemm, os.X_OK):
        print(f"bench: no activemm binary at {a.activemm} (build it: bash scripts/build.sh)",
              file=sys.stderr)
        return 2
    old = load_json(a.compare) if a.compare else None
    runs = 1 if a.quick else a.runs
    cpus_list = [1, 2, 4] if a.quick else [1, 2, 4, 8, 16, 32, 64]
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            replay = []
            for t in traces:
                print(f"bench: replay {t.name} x{runs}", file=sys.stderr)
                replay.append(bench_replay(a.activemm, t, runs, tmp, a.baseline))
            breakdown = []
            for t in traces:
                print(f"bench: profile {t.name}", file=sys.stderr)
                breakdown.append(bench_breakdown(a.activemm, t, a.profile_hz, tmp))
            print("bench: cost", file=sys.stderr)
            floor = bench_floor(a.activemm, tmp, 20 if a.quick else 200)
            print(f"bench: scale {cpus_list}", file=sys.stderr)
            scale = bench_scale(a.activemm, cpus_list, 200 if a.quick else 1000, tmp)
            mm_counts = [10, 100] if a.quick else [10, 100, 1000, 4095]
            print(f"bench: verifier {mm_counts}", file=sys.stderr)
            verifier = bench_verifier(a.activemm, mm_counts, tmp)
    except RunFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 3
    host = replay[0]["host"]
    kind = host.get("kind", "unknown host")
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "host_kind": kind,
        "host_summary": host.get("summary", ""),
        "host_cpus": os.cpu_count(),
        "replay": replay,
        "breakdown": breakdown,
        "floor": floor,
        "scale": scale,
        "verifier": verifier,
    }
    if a.baseline:
        res["baseline"] = a.baseline
    if old:
        res["compare"] = compare(res, old)
        res["compare_file"] = str(a.compare)
    a.plots.mkdir(parents=True, exist_ok=True)
    res["plots"] = [os.path.relpath(p, a.md.parent) for p in plots(res, a.plots, kind)]
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    json_path = a.json or ROOT / "build" / "bench" / f"bench-{slug}.json"
    write_atomically(json_path, (json.dumps(res, indent=2) + "\n").encode())
    cmdline = "/usr/bin/python3 scripts/bench.py" + (" --quick" if a.quick else f" --runs {runs}")
    if a.baseline:
        cmdline += " --baseline OLD/build/vmm/activemm"
    update_md(a.md, kind, markdown(res, cmdline))
    print(f"bench: wrote {json_path}, {a.md} and {', '.join(res['plots'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
