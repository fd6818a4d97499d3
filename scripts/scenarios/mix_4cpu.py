"""A 4-CPU mix: processes, threads, fork, exec, kernel threads, mmap/munmap/mprotect, exits.

Everything Documentation/mm/active_mm.rst describes, interleaved on four CPUs:

- process P with threads P1 and P2 (mm_users 3, one mm_count reference between them), a
  forked child R (dup_mm: an mm of its own; fork then flushes all of P, flush_tlb_mm: a full
  flush on CPU 0 and, by IPI, on CPU 1, the CPUs running P), a process Q that execs (its old
  mm is freed at once by mmput, the new one is "Q.exec1");
- kernel threads K1 and K2 borrowing whatever mm their CPU had (lazy TLB on: enter_lazy_tlb +
  mmgrab_lazy_tlb, no CR3 write; off: init_mm is loaded); K2 later execs ("K2.exec1") and so
  drops its borrowed mm (mmdrop_lazy_tlb);
- switch_mm_irqs_off()'s ASID choices: a first load takes a new ASID and flushes; coming back
  to an mm whose ASID slot is up to date is a CR3 write without flush (P on CPU 0 after R);
  coming back after a munmap elsewhere flushes (P1 on CPU 1 after P's munmap on CPU 0),
  whether CPU 1 was lazily on P (lazy on) or on init_mm (off);
- mmap (no flush), munmap and mprotect (tlb_gen + 1, local INVLPG per page);
- exits of threads and of last threads: with lazy TLB on, an mm whose users are gone lives on
  as the active_mm (a lazy reference) of the tasks its CPUs switched to, until each of those
  CPUs runs a user task; it is loaded nowhere, though: exit_mmap's whole-mm flush with
  freed_tables makes every CPU lazy on it leave it for init_mm (leave_mm), and the other CPUs
  in its mm_cpumask clear their bits. With lazy TLB off it is freed by the last mmput.

Lazy TLB shootdown (CONFIG_MMU_LAZY_TLB_SHOOTDOWN) switches, writes CR3 and flushes exactly as
lazy TLB on does, but mmgrab_lazy_tlb() and mmdrop_lazy_tlb() take and drop no reference:
mm_count is 1 while an mm has users (no kthread_use_mm here), lazy_grabs and lazy_drops stay
0, and an mm is freed by its last mmput, as with lazy TLB off. That final mmdrop runs
cleanup_lazy_tlbs() (kernel/fork.c): do_shoot_lazy_tlb on every CPU of the mm's mm_cpumask
(locally on this CPU, by IPI on the others), moving every task that still has the mm as
active_mm to init_mm. Here exit_mmap's flush has already moved the lazy CPUs to init_mm
(leave_mm keeps their mask bits; CPUs with another mm loaded cleared theirs), so the only
extra IPI is P's to CPU 1 (idle/1 still on P), and no extra CR3 write. The kernel threads
and idle tasks that lazy TLB on leaves holding P or R run on init_mm instead.

PCID off (--pcid=off): choose_new_asid() (arch/x86/mm/tlb.c) returns ASID 0 with need_flush
when the CPU has no PCID, so every CR3 write flushes (P's return to CPU 0 and the init_mm
loads too). The number of CR3 writes, the INVLPGs and the full flushes are the same (the ASID
slot of the loaded mm is at the mm's tlb_gen after every load either way); only
cr3_writes_flush and cr3_writes_noflush are split by PCID mode.

4 CPUs. munmap/mprotect only touch an mm that no other CPU is running (so they send no flush
IPI; the IPIs come from fork's and exit_mmap's whole-mm flushes, and with shootdown from
cleanup_lazy_tlbs), and no CPU loads an mm again through an ASID slot after its own
munmap/mprotect of it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402

LAZY = ["on", "shootdown"]  # the two modes with lazy TLB switching


def build():
    s = Scenario("mix_4cpu", cpus=4)

    # ---- set-up: steps 0-5 create tasks and mms; no switch, no CR3 write, no counter.
    s.spawn("P", pages=6)          # 0: mm P 1/1
    s.clone_vm("P", "P1")          # 1: P mm_users 2
    s.clone_vm("P", "P2")          # 2: P mm_users 3
    s.spawn("Q", pages=3, cpu=2)   # 3: mm Q 1/1 (executed on CPU 2: still no counter)
    s.kthread("K1")                # 4
    s.kthread("K2")                # 5

    # 6-8: CPUs 0, 1, 2 go from idle to P, P1, Q (kernel -> user). On each: first load of the
    #   mm there -> ASID 1 (next_asid 2), flushing CR3 write (PCID off: ASID 0, flushing);
    #   lazy on: finish_task_switch() drops the idle task's lazy reference on init_mm
    #   (lazy_drops 1; shootdown: nothing to drop); user_bursts 1.
    s.run(0, "P")
    s.run(1, "P1")
    s.run(2, "Q")
    # 9: CPU 3: idle/3 -> K1, kernel -> kernel: CPU 3 has init_mm loaded, so enter_lazy_tlb
    #   sets nothing (lazy on, shootdown) and there is nothing to load (off).
    #   K1->active_mm = init_mm.
    s.run(3, "K1")
    # 10: fork by P (running on CPU 0): dup_mm copies P's 6 pages into mm R (1/1). No CR3
    #   write. Then flush_tlb_mm(P), whole mm, freed_tables (fork rule): CPU 0 shootdowns 1;
    #   P's tlb_gen 0 -> 1. P's mm_cpumask is {0, 1}:
    #   - CPU 1: IPI (CPU 0 ipis_sent 1, CPU 1 ipis_received 1); P loaded, not lazy (P1
    #     runs) -> catch up: a whole-mm range -> full flush (CPU 1 full_flushes 1); its
    #     slot 1 (PCID off: slot 0) gets tlb_gen 1.
    #   - CPU 0 (in the mask): P loaded, not lazy -> full flush (CPU 0 full_flushes 1); its
    #     slot 1 gets tlb_gen 1.
    #   Alike in every mode (both CPUs run user tasks of P).
    s.fork("P", "R")
    # 11: three threads, one reference; P loaded on CPUs 0 and 1.
    s.check("P", mm_users=3, mm_count=1, loaded_on=[0, 1], lazy_on=[])
    # 12: P maps 2 pages on CPU 0 (8 entries now): no tlb_gen change. CPU 0 user_bursts 2.
    s.mmap("P", pages=2)
    # 13: CPU 3: K1 -> P2, kernel -> user. switch_mm_irqs_off(P): init_mm != P, first load on
    #   CPU 3 -> ASID 1, flush. Lazy on: rq->prev_mm = K1's active_mm = init_mm ->
    #   mmdrop_lazy_tlb (CPU 3 lazy_drops 1; shootdown: nothing). user_bursts 1.
    s.run(3, "P2")
    # 14: CPU 1: P1 -> K2, user -> kernel.
    #   Lazy on: enter_lazy_tlb (CPU 1 lazy_entries 1); K2->active_mm = P; mmgrab_lazy_tlb(P):
    #   P count 2 (lazy_grabs 1). No CR3 write.
    #   Shootdown: the same without the reference: P count stays 1.
    #   Lazy off: init_mm loaded on CPU 1: ASID 0, CR3 write without flush (PCID off: flush).
    s.run(1, "K2")
    # 15: CPU 0: P -> R, user -> user. switch_mm_irqs_off(R): P != R, CPU 0 slots: init_mm (0),
    #   P (1) -> ASID 2 (next_asid 3), flushing CR3 write. user_bursts 3.
    s.run(0, "R")
    # 16: CPU 0: R -> P, user -> user. ctxs[1] holds P at P's tlb_gen 1 (step 10's flush
    #   brought the slot up to it; mmap does not bump it) -> ASID 1, CR3 write WITHOUT
    #   flush. PCID off: ASID 0, which R's load took over -> flushing. user_bursts 4.
    s.run(0, "P")
    # 17: lazy on: P count 2 = users + K2's lazy reference; CPU 1 lazily on P.
    s.check("P", mm_users=3, mm_count=2, loaded_on=[0, 1, 3], lazy_on=[1], lazy_tlb=True)
    # 18: shootdown: K2's borrow is uncounted: count 1; CPU 1 lazily on P all the same.
    s.check("P", mm_users=3, mm_count=1, loaded_on=[0, 1, 3], lazy_on=[1],
            lazy_tlb="shootdown")
    # 19: lazy off: count 1; CPU 1 has init_mm.
    s.check("P", mm_users=3, mm_count=1, loaded_on=[0, 3], lazy_on=[], lazy_tlb=False)
    # 20: lazy off: K2 runs on init_mm, loaded only on CPU 1.
    s.check(task="K2", loaded_on=[1], lazy_on=[], lazy_tlb=False)
    # 21: R ran on CPU 0 and left: loaded nowhere (CPU 0 has P again).
    s.check("R", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[])
    # 22: totals so far. Switches: 6, 7, 8 (k->u), 9 (k->k), 13 (k->u), 14 (u->k), 15, 16
    #   (u->u) = 8. Lazy on and shootdown: CR3 writes 6, 7, 8, 13, 15, 16 = 6;
    #   lazy_entries 1 (14); user_bursts 6, 7, 8, 12, 13, 15, 16 = 7. Fork's shootdown
    #   (step 10): one IPI, two full flushes (CPUs 0 and 1), no INVLPG.
    s.counters(lazy_tlb=LAZY, context_switches=8, switch_kernel_to_user=4,
               switch_user_to_user=2, switch_user_to_kernel=1, switch_kernel_to_kernel=1,
               cr3_writes=6, lazy_entries=1, shootdowns=1, ipis_sent=1, ipis_received=1,
               full_flushes=2, invlpg=0, leave_mm=0, user_bursts=7)
    # 23: lazy on: lazy_grabs 1 (14); lazy_drops 4 (init_mm at 6, 7, 8, 13).
    s.counters(lazy_tlb=True, lazy_grabs=1, lazy_drops=4)
    # 24: shootdown: no lazy references.
    s.counters(lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # 25: lazy on and shootdown with PCIDs: 5 flushing (new ASIDs), step 16 not.
    s.counters(lazy_tlb=LAZY, pcid=True, cr3_writes_flush=5, cr3_writes_noflush=1)
    # 26: PCID off: all 6 flush (choose_new_asid: ASID 0, need_flush).
    s.counters(lazy_tlb=LAZY, pcid=False, cr3_writes_flush=6, cr3_writes_noflush=0)
    # 27: lazy off: plus step 14's init_mm load: 7 CR3 writes.
    s.counters(lazy_tlb=False, context_switches=8, switch_kernel_to_user=4,
               switch_user_to_user=2, switch_user_to_kernel=1, switch_kernel_to_kernel=1,
               cr3_writes=7, lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1,
               ipis_sent=1, ipis_received=1, full_flushes=2, invlpg=0, leave_mm=0,
               user_bursts=7)
    # 28: lazy off with PCIDs: 5 flushing, 2 not (16, and 14's init_mm).
    s.counters(lazy_tlb=False, pcid=True, cr3_writes_flush=5, cr3_writes_noflush=2)
    # 29: lazy off, PCID off: all 7 flush.
    s.counters(lazy_tlb=False, pcid=False, cr3_writes_flush=7, cr3_writes_noflush=0)
    s.checkpoint()  # 30

    # 31: Q execs on CPU 2: new mm "Q.exec1" (1/1). activate_mm: Q != Q.exec1, no slot ->
    #   ASID 2 (next_asid 3), flush. Q had an mm: mmput(Q) -> users 0 -> exit_mmap:
    #   flush_tlb_mm(Q) (CPU 2 shootdowns 1): Q's mm_cpumask is {2} only and CPU 2 has
    #   Q.exec1 loaded now -> no IPI, no flush. mmdrop -> count 0: Q is freed (no CPU
    #   borrowed it). Shootdown: __mmdrop's cleanup_lazy_tlbs(Q) runs do_shoot_lazy_tlb on
    #   CPU 2 alone (mask {2}: locally, no IPI), where Q's active_mm is Q.exec1: nothing.
    #   Ring 3 (CPU 2 user_bursts 2).
    s.exec("Q", pages=5)
    # 32-33
    s.check("Q", freed=True, loaded_on=[])
    s.check(task="Q", mm_users=1, mm_count=1, loaded_on=[2], lazy_on=[])
    # 34: Q makes its last 2 pages read-only: Q.exec1's tlb_gen + 1 (CPU 2 shootdowns 2);
    #   loaded on CPU 2 (this CPU, the only one in the mask) -> 2 INVLPGs, no IPI. CPU 2
    #   user_bursts 3.
    s.mprotect("Q", pages=2, prot="r")
    # 35: CPU 2: Q -> R, user -> user. CPU 2 slots: init_mm, Q (freed), Q.exec1 -> ASID 3
    #   (next_asid 4), flush. CPU 2 user_bursts 4.
    s.run(2, "R")
    # 36: P2 exits on CPU 3.
    #   Lazy on: mmgrab_lazy_tlb(P) (CPU 3 lazy_grabs 1) -> count 3; enter_lazy_tlb (CPU 3
    #   lazy_entries 1); mmput: users 2. Kernel -> kernel to idle/3, which inherits P.
    #   Shootdown: the same without the reference: count stays 1.
    #   Lazy off: init_mm loaded on CPU 3 (ASID 0, no flush; PCID off: flush); mmput:
    #   users 2; k -> k.
    s.exit("P2")
    # 37: lazy on: 3 = users + K2's (CPU 1) + idle/3's (CPU 3) lazy references.
    s.check("P", mm_users=2, mm_count=3, loaded_on=[0, 1, 3], lazy_on=[1, 3], lazy_tlb=True)
    # 38: shootdown: the users' reference alone; CPUs 1 and 3 lazy on P as with lazy on.
    s.check("P", mm_users=2, mm_count=1, loaded_on=[0, 1, 3], lazy_on=[1, 3],
            lazy_tlb="shootdown")
    # 39: lazy off: only CPU 0 (running P) has P.
    s.check("P", mm_users=2, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)
    # 40: CPU 3: idle/3 -> Q, kernel -> user. switch_mm_irqs_off(Q.exec1): CPU 3 slots:
    #   init_mm, P -> ASID 2, flush. Lazy on: mmdrop_lazy_tlb(P) (CPU 3 lazy_drops 2) ->
    #   count 2 (shootdown: nothing dropped). CPU 3 user_bursts 2.
    s.run(3, "Q")
    # 41: P unmaps its last 3 pages on CPU 0 (5 stay mapped): P's tlb_gen 1 -> 2 (CPU 0
    #   shootdowns 2). CPU 0's slot 1 (PCID off: slot 0, loaded at step 16) is at 1,
    #   exactly one generation behind -> 3 INVLPGs on CPU 0. P's mm_cpumask is {0, 1, 3},
    #   but should_flush_tlb (no freed_tables) skips CPU 1 (lazy on P with lazy TLB on or
    #   shootdown; init_mm loaded with it off) and CPU 3 (Q.exec1 loaded): no IPI. CPU 0
    #   user_bursts 5.
    s.munmap("P", pages=3)
    # 42: CPU 0 so far, alike in every mode: switches 6 (k->u), 15, 16 (u->u); CR3 writes
    #   6, 15 and 16; invlpg 3; no lazy entry or grab; user_bursts 6, 12, 15, 16, 41.
    s.counters(cpu=0, context_switches=3, switch_kernel_to_user=1, switch_user_to_user=2,
               cr3_writes=3, invlpg=3, lazy_entries=0, lazy_grabs=0, user_bursts=5)
    # 43: with PCIDs: 6 and 15 flush (new ASIDs), 16 does not (ASID 1 up to date).
    s.counters(cpu=0, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=1)
    # 44: PCID off: all 3 flush.
    s.counters(cpu=0, pcid=False, cr3_writes_flush=3, cr3_writes_noflush=0)
    # 45: the lazy-mode-dependent part: lazy on, step 6 dropped idle/0's init_mm reference
    #   ...
    s.counters(cpu=0, lazy_tlb=True, lazy_drops=1)
    # 46: ... which shootdown (no lazy references) and lazy off (no prev_mm) do not.
    s.counters(cpu=0, lazy_tlb=["shootdown", "off"], lazy_drops=0)
    # 47: CPU 1: K2 -> P1, kernel -> user.
    #   Lazy on and shootdown: loaded == P and was lazy; ctxs[1].tlb_gen (PCID off: ctxs[0])
    #   1 (step 10's IPI) < P's 2 (step 41) -> flushing CR3 write, same ASID.
    #   rq->prev_mm = P: lazy on: mmdrop_lazy_tlb -> count 1 (CPU 1 lazy_drops 2);
    #   shootdown: nothing dropped.
    #   Lazy off: init_mm != P; slot 1 holds P at tlb_gen 1 < 2 -> ASID 1, flush (PCID off:
    #   ASID 0, flush). CPU 1 user_bursts 2.
    s.run(1, "P1")
    # 48: two threads left, one reference; both loaded non-lazily.
    s.check("P", mm_users=2, mm_count=1, loaded_on=[0, 1], lazy_on=[])
    # 49: CPU 2: R -> K2, user -> kernel.
    #   Lazy on: enter_lazy_tlb (CPU 2 lazy_entries 1); K2 borrows R: mmgrab_lazy_tlb(R) ->
    #   R count 2 (CPU 2 lazy_grabs 1). Shootdown: the same without the reference: R count 1.
    #   Lazy off: init_mm (ASID 0 still init_mm's on CPU 2), no flush (PCID off: flush).
    s.run(2, "K2")
    # 50: K2 execs on CPU 2: "K2.exec1" (1/1); activate_mm: no slot -> ASID 4 (next_asid 5),
    #   flush. K2 had no mm: lazy on: mmdrop_lazy_tlb(R) -> R count 1 (CPU 2 lazy_drops 2);
    #   shootdown: mmdrop_lazy_tlb drops nothing; lazy off: nothing to drop. CPU 2
    #   user_bursts 5.
    s.exec("K2", pages=2)
    # 51-52
    s.check("R", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[])
    s.check("K2.exec1", mm_users=1, mm_count=1, loaded_on=[2], lazy_on=[])
    # 53: P1 exits on CPU 1. Lazy on: grab (CPU 1 lazy_grabs 2) -> 2, lazy (lazy_entries 2),
    #   mmput -> users 1; idle/1 inherits P. Shootdown: no grab (count 1), lazy
    #   (lazy_entries 2), users 1; idle/1 inherits P uncounted. Lazy off: init_mm (no
    #   flush; PCID off: flush), users 1.
    s.exit("P1")
    # 54: P, the last thread, exits on CPU 0. Lazy on: grab (CPU 0 lazy_grabs 1) -> 3, lazy
    #   (CPU 0 lazy_entries 1), mmput -> users 0: exit_mmap: flush_tlb_mm(P), freed_tables
    #   (CPU 0 shootdowns 3). P's mm_cpumask is {0, 1, 3} (CPU 3's bit was never cleared:
    #   step 41 sent it no IPI):
    #   - CPU 0 itself: P loaded, lazy -> leave_mm (CPU 0 leave_mm 1): init_mm; CPU 0 used
    #     ASIDs 1 and 2 only, so slot 0 still holds init_mm -> ASID 0, CR3 write, no flush
    #     (PCID off: flush).
    #   - CPU 1: IPI (its 2nd received), P loaded lazily (idle/1) -> leave_mm (CPU 1
    #     leave_mm 1): init_mm, ASID 0 (CPU 1 used ASID 1 only), CR3 write without flush
    #     (PCID off: flush).
    #   - CPU 3: IPI (its 1st received), Q.exec1 loaded, not P -> clears its mask bit.
    #   CPU 0 ipis_sent 3 (1 at step 10, 2 now). mmdrop -> 2; idle/0 inherits P
    #   (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Shootdown: no grab (count 1); lazy (CPU 0 lazy_entries 1); exit_mmap: the same flush,
    #   IPIs and two leave_mm. Then mmdrop -> count 0 -> __mmdrop(P) -> cleanup_lazy_tlbs(P):
    #   P's mask is now {0, 1} (CPU 3 cleared its bit; leave_mm keeps CPUs 0 and 1):
    #   do_shoot_lazy_tlb on CPU 0 locally (the exiting P's active_mm P -> init_mm) and on
    #   CPU 1 by IPI (CPU 0 ipis_sent 4, CPU 1's 3rd received: idle/1's active_mm P ->
    #   init_mm). Both have init_mm loaded already: no CR3 write, no leave_mm. P is freed;
    #   idle/0 inherits init_mm.
    #   Lazy off: init_mm (CPU 0 ASID 0, no flush; PCID off: flush); mmput -> users 0 ->
    #   exit_mmap: the same shootdown and IPIs to CPUs 1 and 3 (mask {0, 1, 3}: bits stay
    #   when a CPU switches away), but no CPU has P loaded: each clears its bit, no leave_mm.
    #   P is freed.
    s.exit("P")
    # 55: lazy on: P outlives its users: idle/0 and idle/1 hold it (their active_mm), but it
    #   is loaded nowhere: step 54's flush moved CPUs 0 and 1 to init_mm.
    s.check("P", mm_users=0, mm_count=2, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # 56: shootdown and lazy off: freed at step 54.
    s.check("P", freed=True, loaded_on=[], lazy_tlb=["shootdown", "off"])
    # 57: CPU 1: idle/1 -> R, kernel -> user. Loaded is init_mm in every mode (lazy on and
    #   shootdown since step 54's leave_mm): a normal mm switch. CPU 1 slots: init_mm, P ->
    #   ASID 2, flush. Lazy on: rq->prev_mm = P (idle/1's active_mm): mmdrop_lazy_tlb(P)
    #   (CPU 1 lazy_drops 3) -> count 1. Shootdown: rq->prev_mm = init_mm, nothing dropped.
    #   CPU 1 user_bursts 3.
    s.run(1, "R")
    # 58: CPU 0: idle/0 -> K1, kernel -> kernel: K1 takes idle/0's active_mm (P, lazy on;
    #   init_mm, shootdown and off) with its reference. No CR3 write; CPU 0 has init_mm
    #   loaded (lazy on and shootdown: since step 54's leave_mm), so enter_lazy_tlb sets
    #   nothing.
    s.run(0, "K1")
    # 59-60: lazy on: K1 alone keeps P alive (its active_mm), but P is loaded nowhere.
    s.check("P", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    s.check(task="K1", mm_users=0, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=True)
    # 61: shootdown and lazy off: K1 is on init_mm, loaded on CPU 0 only (CPU 1 R, 2
    #   K2.exec1, 3 Q.exec1).
    s.check(task="K1", loaded_on=[0], lazy_on=[], lazy_tlb=["shootdown", "off"])
    # 62: CPU 3: Q -> idle/3, user -> kernel. Lazy on: enter_lazy_tlb (CPU 3 lazy_entries 2),
    #   mmgrab_lazy_tlb(Q.exec1) -> count 2 (CPU 3 lazy_grabs 2). Shootdown: enter_lazy_tlb,
    #   no reference (count 1). Lazy off: init_mm, no flush (PCID off: flush).
    s.idle(3)
    # 63: R exits on CPU 1. Lazy on: grab (CPU 1 lazy_grabs 3) -> 2, lazy (lazy_entries 3),
    #   mmput -> users 0: exit_mmap: flush_tlb_mm(R), freed_tables (CPU 1 shootdowns 1).
    #   R's mm_cpumask is {0, 1, 2} (steps 15, 57, 35):
    #   - CPU 1 itself: R loaded, lazy -> leave_mm (CPU 1 leave_mm 2): init_mm; CPU 1 used
    #     ASIDs 1 and 2 only -> ASID 0, CR3 write without flush (PCID off: flush).
    #   - CPU 0 (init_mm loaded) and CPU 2 (K2.exec1 loaded): IPIs (CPU 1 ipis_sent 2; CPU 0
    #     ipis_received 1, CPU 2 ipis_received 1); R is not loaded there -> each clears its
    #     mask bit.
    #   mmdrop -> 1; idle/1 inherits R (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Shootdown: no grab (count 1), lazy (lazy_entries 3); exit_mmap: the same flush,
    #   IPIs and leave_mm. mmdrop -> count 0 -> cleanup_lazy_tlbs(R): R's mask is {1} now
    #   (CPUs 0 and 2 cleared theirs): do_shoot_lazy_tlb on CPU 1 alone, locally (no IPI):
    #   the exiting R's active_mm R -> init_mm, already loaded. R is freed; idle/1 inherits
    #   init_mm.
    #   Lazy off: init_mm (no flush; PCID off: flush), mmput -> users 0 -> exit_mmap: the
    #   same shootdown and IPIs to CPUs 0 and 2; no CPU has R loaded: bits cleared, no
    #   leave_mm. R is freed.
    s.exit("R")
    # 64: CPU 0: K1 -> Q, kernel -> user. Loaded is init_mm in every mode (lazy on and
    #   shootdown since step 54): a normal mm switch. CPU 0 slots: init_mm, P, R -> ASID 3,
    #   flush. Lazy on: rq->prev_mm = P: mmdrop_lazy_tlb -> count 0: P is freed (CPU 0
    #   lazy_drops 2). Shootdown: rq->prev_mm = init_mm, nothing dropped. CPU 0
    #   user_bursts 6.
    s.run(0, "Q")
    # 65-73: the final state.
    s.check("P", freed=True, loaded_on=[])
    # Q.exec1, lazy on: users + idle/3's lazy reference; running on CPU 0, lazy on CPU 3.
    s.check("Q.exec1", mm_users=1, mm_count=2, loaded_on=[0, 3], lazy_on=[3], lazy_tlb=True)
    # Q.exec1, shootdown: the users' reference alone; loaded as with lazy on.
    s.check("Q.exec1", mm_users=1, mm_count=1, loaded_on=[0, 3], lazy_on=[3],
            lazy_tlb="shootdown")
    s.check("Q.exec1", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)
    # R, lazy on: no users, held by idle/1 (its active_mm), loaded nowhere (CPU 1 left it
    #   for init_mm at step 63); shootdown and lazy off: freed at step 63.
    s.check("R", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    s.check("R", freed=True, loaded_on=[], lazy_tlb=["shootdown", "off"])
    s.check("K2.exec1", mm_users=1, mm_count=1, loaded_on=[2], lazy_on=[])
    # init_mm: with lazy TLB on or shootdown, loaded on CPU 1 (leave_mm at step 63; not
    #   lazy: the switch_mm_irqs_off cleared is_lazy), while CPU 3 keeps Q.exec1 lazily; on
    #   the idle CPUs 1 and 3 with lazy TLB off.
    s.check("init_mm", loaded_on=[1], lazy_on=[], lazy_tlb=LAZY)
    s.check("init_mm", loaded_on=[1, 3], lazy_on=[], lazy_tlb=False)

    # 74-79: CPU 0: switches 6 (k->u), 15, 16 (u->u), 54 (k->k), 58 (k->k), 64 (k->u).
    #   Lazy on and shootdown: CR3 writes 6, 15, 64 (new ASIDs), 16 (ASID 1 again), 54
    #   (leave_mm to init_mm); lazy_entries at 54; user_bursts 6, 12, 15, 16, 41, 64;
    #   shootdowns 3 (fork at 10, munmap at 41, exit_mmap of P at 54); ipis_received 1
    #   (R's exit_mmap at 63; shootdown: R's cleanup_lazy_tlbs sent none); full_flushes 1
    #   (step 10); invlpg 3 (step 41).
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_user=2, switch_kernel_to_kernel=2, switch_user_to_kernel=0,
               cr3_writes=5, invlpg=3, lazy_entries=1, shootdowns=3, ipis_received=1,
               full_flushes=1, leave_mm=1, user_bursts=6)
    #   Lazy on: lazy_grabs at 54; lazy_drops at 6 (init_mm) and 64 (P); ipis_sent 3
    #   (CPU 1 at 10; CPUs 1 and 3 at 54).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=1, lazy_drops=2, ipis_sent=3)
    #   Shootdown: no lazy references; ipis_sent 4: plus cleanup_lazy_tlbs(P)'s IPI to
    #   CPU 1 at 54.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_sent=4)
    #   Lazy off: the same 5 CR3 writes, the one at step 54 being exit_mm's init_mm load;
    #   exit_mmap then found init_mm loaded: no leave_mm. ipis_sent 3.
    s.counters(cpu=0, lazy_tlb=False, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_user=2, switch_kernel_to_kernel=2, switch_user_to_kernel=0,
               cr3_writes=5, invlpg=3, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=3, ipis_sent=3, ipis_received=1, full_flushes=1, leave_mm=0,
               user_bursts=6)
    #   With PCIDs, in every lazy mode: 6, 15, 64 flush; 16 (ASID 1 up to date) and the
    #   init_mm load at 54 (ASID 0) do not.
    s.counters(cpu=0, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=2)
    #   PCID off: all 5 flush.
    s.counters(cpu=0, pcid=False, cr3_writes_flush=5, cr3_writes_noflush=0)
    # 80-87: CPU 1: switches 7 (k->u), 14 (u->k), 47 (k->u), 53 (k->k), 57 (k->u), 63 (k->k).
    #   Lazy on and shootdown: CR3 writes 7, 47, 57 (flushing), and the leave_mm loads of
    #   init_mm at 54 (IPI) and 63 (own exit_mmap); lazy_entries at 14, 53, 63;
    #   user_bursts 7, 47, 57; shootdowns 1 (exit_mmap of R at 63); ipis_sent 2 (CPUs 0 and
    #   2 at 63); full_flushes 1 (step 10).
    s.counters(cpu=1, lazy_tlb=LAZY, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=1, switch_kernel_to_kernel=2, switch_user_to_user=0,
               cr3_writes=5, invlpg=0, lazy_entries=3, shootdowns=1, ipis_sent=2,
               full_flushes=1, leave_mm=2, user_bursts=3)
    #   Lazy on: lazy_grabs at 14, 53, 63; lazy_drops at 7 (init_mm), 47 (P), 57 (P);
    #   ipis_received 2 (steps 10 and 54).
    s.counters(cpu=1, lazy_tlb=True, lazy_grabs=3, lazy_drops=3, ipis_received=2)
    #   Shootdown: no lazy references; ipis_received 3: plus cleanup_lazy_tlbs(P)'s at 54.
    s.counters(cpu=1, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_received=3)
    #   Lazy on and shootdown with PCIDs: 7, 47, 57 flush; the init_mm loads do not.
    s.counters(cpu=1, lazy_tlb=LAZY, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=2)
    #   PCID off: all 5 flush.
    s.counters(cpu=1, lazy_tlb=LAZY, pcid=False, cr3_writes_flush=5, cr3_writes_noflush=0)
    #   Lazy off: CR3 writes 7, 47, 57 plus init_mm loads at 14, 53, 63; the flushes at 54
    #   and 63 found init_mm loaded: no leave_mm.
    s.counters(cpu=1, lazy_tlb=False, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=1, switch_kernel_to_kernel=2, switch_user_to_user=0,
               cr3_writes=6, invlpg=0, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=1, ipis_sent=2, ipis_received=2, full_flushes=1, leave_mm=0,
               user_bursts=3)
    #   Lazy off with PCIDs: 7, 47, 57 flush; the 3 init_mm loads do not.
    s.counters(cpu=1, lazy_tlb=False, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=3)
    #   Lazy off, PCID off: all 6 flush.
    s.counters(cpu=1, lazy_tlb=False, pcid=False, cr3_writes_flush=6, cr3_writes_noflush=0)
    # 88-93: CPU 2: switches 8 (k->u), 35 (u->u), 49 (u->k).
    #   Lazy on and shootdown: CR3 writes 8, 31 (exec), 35, 50 (exec), all first loads:
    #   flushing with or without PCID; invlpg 2 (step 34); lazy_entries at 49;
    #   user_bursts 8, 31, 34, 35, 50; shootdowns 2 (exit_mmap of Q at 31, mprotect at 34);
    #   no IPI sent; ipis_received 1 (R's exit_mmap at 63: K2.exec1 loaded, bit cleared).
    s.counters(cpu=2, lazy_tlb=LAZY, context_switches=3, switch_kernel_to_user=1,
               switch_user_to_user=1, switch_user_to_kernel=1, switch_kernel_to_kernel=0,
               cr3_writes=4, cr3_writes_flush=4, cr3_writes_noflush=0, invlpg=2,
               lazy_entries=1, shootdowns=2, ipis_sent=0, ipis_received=1, full_flushes=0,
               leave_mm=0, user_bursts=5)
    #   Lazy on: lazy_grabs at 49; lazy_drops at 8 (init_mm) and 50 (R).
    s.counters(cpu=2, lazy_tlb=True, lazy_grabs=1, lazy_drops=2)
    #   Shootdown: none.
    s.counters(cpu=2, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    #   Lazy off: plus step 49's init_mm load.
    s.counters(cpu=2, lazy_tlb=False, context_switches=3, switch_kernel_to_user=1,
               switch_user_to_user=1, switch_user_to_kernel=1, switch_kernel_to_kernel=0,
               cr3_writes=5, invlpg=2, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=2, ipis_sent=0, ipis_received=1, full_flushes=0, leave_mm=0,
               user_bursts=5)
    #   Lazy off with PCIDs: 4 flushing, the init_mm load (49) not.
    s.counters(cpu=2, lazy_tlb=False, pcid=True, cr3_writes_flush=4, cr3_writes_noflush=1)
    #   Lazy off, PCID off: all 5 flush.
    s.counters(cpu=2, lazy_tlb=False, pcid=False, cr3_writes_flush=5, cr3_writes_noflush=0)
    # 94-99: CPU 3: switches 9 (k->k), 13 (k->u), 36 (k->k), 40 (k->u), 62 (u->k).
    #   Lazy on and shootdown: CR3 writes 13, 40 (first loads: flushing with or without
    #   PCID); lazy_entries at 36 and 62; user_bursts 13, 40; no shootdown; ipis_received 1
    #   (P's exit_mmap at 54: Q.exec1 loaded, bit cleared; so shootdown's cleanup_lazy_tlbs
    #   of P skipped CPU 3).
    s.counters(cpu=3, lazy_tlb=LAZY, context_switches=5, switch_kernel_to_kernel=2,
               switch_kernel_to_user=2, switch_user_to_kernel=1, switch_user_to_user=0,
               cr3_writes=2, cr3_writes_flush=2, cr3_writes_noflush=0, invlpg=0,
               lazy_entries=2, shootdowns=0, ipis_sent=0, ipis_received=1, full_flushes=0,
               leave_mm=0, user_bursts=2)
    #   Lazy on: lazy_grabs at 36 and 62; lazy_drops at 13 (init_mm, K1's) and 40 (P).
    s.counters(cpu=3, lazy_tlb=True, lazy_grabs=2, lazy_drops=2)
    #   Shootdown: none.
    s.counters(cpu=3, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    #   Lazy off: plus init_mm loads at 36 and 62.
    s.counters(cpu=3, lazy_tlb=False, context_switches=5, switch_kernel_to_kernel=2,
               switch_kernel_to_user=2, switch_user_to_kernel=1, switch_user_to_user=0,
               cr3_writes=4, invlpg=0, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=0, ipis_sent=0, ipis_received=1, full_flushes=0, leave_mm=0,
               user_bursts=2)
    #   Lazy off with PCIDs: 13 and 40 flush; the init_mm loads (36, 62) do not.
    s.counters(cpu=3, lazy_tlb=False, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=2)
    #   Lazy off, PCID off: all 4 flush.
    s.counters(cpu=3, lazy_tlb=False, pcid=False, cr3_writes_flush=4, cr3_writes_noflush=0)
    # 100-107: totals = the sums of steps 74-99. Lazy on and shootdown: 16 CR3 writes, 12
    #   flushing with PCIDs and 4 not (step 16, and the leave_mm loads at 54 on CPUs 0 and 1
    #   and at 63 on CPU 1); lazy off: 20, the same 12 flushing and 8 not (step 16, and the
    #   init_mm loads at steps 14, 36, 49, 53, 54, 62, 63). Without PCID all of them flush.
    #   invlpg 5 = 3 (step 41) + 2 (step 34); full_flushes 2 (fork's whole-mm flush at step
    #   10 on CPUs 0 and 1). Shootdowns 6 (steps 10, 31, 34, 41, 54, 63); IPIs 5 (1 at step
    #   10, 2 at 54, 2 at 63), each received once; shootdown adds cleanup_lazy_tlbs(P)'s IPI
    #   to CPU 1 at 54.
    s.counters(lazy_tlb=LAZY, context_switches=20, switch_kernel_to_user=8,
               switch_user_to_user=3, switch_user_to_kernel=3, switch_kernel_to_kernel=6,
               cr3_writes=16, invlpg=5, lazy_entries=7, shootdowns=6, full_flushes=2,
               leave_mm=3, user_bursts=16)
    s.counters(lazy_tlb=True, lazy_grabs=7, lazy_drops=9, ipis_sent=5, ipis_received=5)
    s.counters(lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_sent=6,
               ipis_received=6)
    s.counters(lazy_tlb=LAZY, pcid=True, cr3_writes_flush=12, cr3_writes_noflush=4)
    s.counters(lazy_tlb=LAZY, pcid=False, cr3_writes_flush=16, cr3_writes_noflush=0)
    s.counters(lazy_tlb=False, context_switches=20, switch_kernel_to_user=8,
               switch_user_to_user=3, switch_user_to_kernel=3, switch_kernel_to_kernel=6,
               cr3_writes=20, invlpg=5, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=6, ipis_sent=5, ipis_received=5, full_flushes=2, leave_mm=0,
               user_bursts=16)
    s.counters(lazy_tlb=False, pcid=True, cr3_writes_flush=12, cr3_writes_noflush=8)
    s.counters(lazy_tlb=False, pcid=False, cr3_writes_flush=20, cr3_writes_noflush=0)
    return s


if __name__ == "__main__":
    main(build())
