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

4 CPUs. munmap/mprotect only touch an mm that no other CPU is running (so they send no flush
IPI; the IPIs come from fork's and exit_mmap's whole-mm flushes), and no CPU loads an mm again
through an ASID slot after its own munmap/mprotect of it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402


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
    #   mm there -> ASID 1 (next_asid 2), flushing CR3 write; lazy on: finish_task_switch()
    #   drops the idle task's lazy reference on init_mm (lazy_drops 1); user_bursts 1.
    s.run(0, "P")
    s.run(1, "P1")
    s.run(2, "Q")
    # 9: CPU 3: idle/3 -> K1, kernel -> kernel: CPU 3 has init_mm loaded, so enter_lazy_tlb
    #   sets nothing (lazy on) and there is nothing to load (off). K1->active_mm = init_mm.
    s.run(3, "K1")
    # 10: fork by P (running on CPU 0): dup_mm copies P's 6 pages into mm R (1/1). No CR3
    #   write. Then flush_tlb_mm(P), whole mm, freed_tables (fork rule): CPU 0 shootdowns 1;
    #   P's tlb_gen 0 -> 1. P's mm_cpumask is {0, 1}:
    #   - CPU 1: IPI (CPU 0 ipis_sent 1, CPU 1 ipis_received 1); P loaded, not lazy (P1
    #     runs) -> catch up: a whole-mm range -> full flush (CPU 1 full_flushes 1); its
    #     slot 1 gets tlb_gen 1.
    #   - CPU 0 (in the mask): P loaded, not lazy -> full flush (CPU 0 full_flushes 1); its
    #     slot 1 gets tlb_gen 1.
    #   Alike in both modes (both CPUs run user tasks of P).
    s.fork("P", "R")
    # 11: three threads, one reference; P loaded on CPUs 0 and 1.
    s.check("P", mm_users=3, mm_count=1, loaded_on=[0, 1], lazy_on=[])
    # 12: P maps 2 pages on CPU 0 (8 entries now): no tlb_gen change. CPU 0 user_bursts 2.
    s.mmap("P", pages=2)
    # 13: CPU 3: K1 -> P2, kernel -> user. switch_mm_irqs_off(P): init_mm != P, first load on
    #   CPU 3 -> ASID 1, flush. Lazy on: rq->prev_mm = K1's active_mm = init_mm ->
    #   mmdrop_lazy_tlb (CPU 3 lazy_drops 1). user_bursts 1.
    s.run(3, "P2")
    # 14: CPU 1: P1 -> K2, user -> kernel.
    #   Lazy on: enter_lazy_tlb (CPU 1 lazy_entries 1); K2->active_mm = P; mmgrab_lazy_tlb(P):
    #   P count 2 (lazy_grabs 1). No CR3 write.
    #   Lazy off: init_mm loaded on CPU 1: ASID 0, CR3 write without flush.
    s.run(1, "K2")
    # 15: CPU 0: P -> R, user -> user. switch_mm_irqs_off(R): P != R, CPU 0 slots: init_mm (0),
    #   P (1) -> ASID 2 (next_asid 3), flushing CR3 write. user_bursts 3.
    s.run(0, "R")
    # 16: CPU 0: R -> P, user -> user. ctxs[1] holds P at P's tlb_gen 1 (step 10's flush
    #   brought the slot up to it; mmap does not bump it) -> ASID 1, CR3 write WITHOUT
    #   flush. user_bursts 4.
    s.run(0, "P")
    # 17: lazy on: P count 2 = users + K2's lazy reference; CPU 1 lazily on P.
    s.check("P", mm_users=3, mm_count=2, loaded_on=[0, 1, 3], lazy_on=[1], lazy_tlb=True)
    # 18: lazy off: count 1; CPU 1 has init_mm.
    s.check("P", mm_users=3, mm_count=1, loaded_on=[0, 3], lazy_on=[], lazy_tlb=False)
    # 19: lazy off: K2 runs on init_mm, loaded only on CPU 1.
    s.check(task="K2", loaded_on=[1], lazy_on=[], lazy_tlb=False)
    # 20: R ran on CPU 0 and left: loaded nowhere (CPU 0 has P again).
    s.check("R", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[])
    # 21: totals so far. Switches: 6, 7, 8 (k->u), 9 (k->k), 13 (k->u), 14 (u->k), 15, 16
    #   (u->u) = 8. Lazy on: CR3 writes 6, 7, 8, 13, 15 (flush) and 16 (no flush) = 6;
    #   lazy_drops 4 (init_mm at 6, 7, 8, 13); lazy_entries/grabs 1 (14);
    #   user_bursts 6, 7, 8, 12, 13, 15, 16 = 7. Both modes: fork's shootdown (step 10): one
    #   IPI, two full flushes (CPUs 0 and 1), no INVLPG.
    s.counters(lazy_tlb=True, context_switches=8, switch_kernel_to_user=4,
               switch_user_to_user=2, switch_user_to_kernel=1, switch_kernel_to_kernel=1,
               cr3_writes=6, cr3_writes_flush=5, cr3_writes_noflush=1, lazy_entries=1,
               lazy_grabs=1, lazy_drops=4, shootdowns=1, ipis_sent=1, ipis_received=1,
               full_flushes=2, invlpg=0, leave_mm=0, user_bursts=7)
    # 22: lazy off: plus step 14's init_mm load (no flush): 7 CR3 writes, 2 without flush.
    s.counters(lazy_tlb=False, context_switches=8, switch_kernel_to_user=4,
               switch_user_to_user=2, switch_user_to_kernel=1, switch_kernel_to_kernel=1,
               cr3_writes=7, cr3_writes_flush=5, cr3_writes_noflush=2, lazy_entries=0,
               lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=1, ipis_received=1,
               full_flushes=2, invlpg=0, leave_mm=0, user_bursts=7)
    s.checkpoint()  # 23

    # 24: Q execs on CPU 2: new mm "Q.exec1" (1/1). activate_mm: Q != Q.exec1, no slot ->
    #   ASID 2 (next_asid 3), flush. Q had an mm: mmput(Q) -> users 0 -> exit_mmap:
    #   flush_tlb_mm(Q) (CPU 2 shootdowns 1): Q's mm_cpumask is {2} only and CPU 2 has
    #   Q.exec1 loaded now -> no IPI, no flush. mmdrop -> count 0: Q is freed (no CPU
    #   borrowed it). Ring 3 (CPU 2 user_bursts 2).
    s.exec("Q", pages=5)
    # 25-26
    s.check("Q", freed=True, loaded_on=[])
    s.check(task="Q", mm_users=1, mm_count=1, loaded_on=[2], lazy_on=[])
    # 27: Q makes its last 2 pages read-only: Q.exec1's tlb_gen + 1 (CPU 2 shootdowns 2);
    #   loaded on CPU 2 (this CPU, the only one in the mask) -> 2 INVLPGs, no IPI. CPU 2
    #   user_bursts 3.
    s.mprotect("Q", pages=2, prot="r")
    # 28: CPU 2: Q -> R, user -> user. CPU 2 slots: init_mm, Q (freed), Q.exec1 -> ASID 3
    #   (next_asid 4), flush. CPU 2 user_bursts 4.
    s.run(2, "R")
    # 29: P2 exits on CPU 3.
    #   Lazy on: mmgrab_lazy_tlb(P) (CPU 3 lazy_grabs 1) -> count 3; enter_lazy_tlb (CPU 3
    #   lazy_entries 1); mmput: users 2. Kernel -> kernel to idle/3, which inherits P.
    #   Lazy off: init_mm loaded on CPU 3 (ASID 0, no flush); mmput: users 2; k -> k.
    s.exit("P2")
    # 30: lazy on: 3 = users + K2's (CPU 1) + idle/3's (CPU 3) lazy references.
    s.check("P", mm_users=2, mm_count=3, loaded_on=[0, 1, 3], lazy_on=[1, 3], lazy_tlb=True)
    # 31: lazy off: only CPU 0 (running P) has P.
    s.check("P", mm_users=2, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)
    # 32: CPU 3: idle/3 -> Q, kernel -> user. switch_mm_irqs_off(Q.exec1): CPU 3 slots:
    #   init_mm, P -> ASID 2, flush. Lazy on: mmdrop_lazy_tlb(P) (CPU 3 lazy_drops 2) ->
    #   count 2. CPU 3 user_bursts 2.
    s.run(3, "Q")
    # 33: P unmaps its last 3 pages on CPU 0 (5 stay mapped): P's tlb_gen 1 -> 2 (CPU 0
    #   shootdowns 2). CPU 0's slot 1 is at 1 (step 10), exactly one generation behind ->
    #   3 INVLPGs on CPU 0. P's mm_cpumask is {0, 1, 3}, but should_flush_tlb (no
    #   freed_tables) skips CPU 1 (lazy on P with lazy TLB on; init_mm loaded with it off)
    #   and CPU 3 (Q.exec1 loaded): no IPI. CPU 0 user_bursts 5.
    s.munmap("P", pages=3)
    # 34: CPU 0 so far, alike in both modes: switches 6 (k->u), 15, 16 (u->u); CR3 writes
    #   6 and 15 (flush), 16 (no flush); invlpg 3; user_bursts 6, 12, 15, 16, 33.
    s.counters(cpu=0, context_switches=3, switch_kernel_to_user=1, switch_user_to_user=2,
               cr3_writes=3, cr3_writes_flush=2, cr3_writes_noflush=1, invlpg=3,
               user_bursts=5)
    # 35: the mode-dependent part: lazy on, step 6 dropped idle/0's init_mm reference.
    s.counters(cpu=0, lazy_tlb=True, lazy_drops=1, lazy_entries=0, lazy_grabs=0)
    # 36: CPU 1: K2 -> P1, kernel -> user.
    #   Lazy on: loaded == P and was lazy; ctxs[1].tlb_gen 1 (step 10's IPI) < P's 2
    #   (step 33) -> flushing CR3 write, same ASID 1. rq->prev_mm = P: mmdrop_lazy_tlb ->
    #   count 1 (CPU 1 lazy_drops 2).
    #   Lazy off: init_mm != P; slot 1 holds P at tlb_gen 1 < 2 -> ASID 1, flush.
    #   CPU 1 user_bursts 2.
    s.run(1, "P1")
    # 37: two threads left, one reference; both loaded non-lazily.
    s.check("P", mm_users=2, mm_count=1, loaded_on=[0, 1], lazy_on=[])
    # 38: CPU 2: R -> K2, user -> kernel.
    #   Lazy on: enter_lazy_tlb (CPU 2 lazy_entries 1); K2 borrows R: mmgrab_lazy_tlb(R) ->
    #   R count 2 (CPU 2 lazy_grabs 1).
    #   Lazy off: init_mm (ASID 0 still init_mm's on CPU 2), no flush.
    s.run(2, "K2")
    # 39: K2 execs on CPU 2: "K2.exec1" (1/1); activate_mm: no slot -> ASID 4 (next_asid 5),
    #   flush. K2 had no mm: lazy on: mmdrop_lazy_tlb(R) -> R count 1 (CPU 2 lazy_drops 2);
    #   lazy off: nothing to drop. CPU 2 user_bursts 5.
    s.exec("K2", pages=2)
    # 40-41
    s.check("R", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[])
    s.check("K2.exec1", mm_users=1, mm_count=1, loaded_on=[2], lazy_on=[])
    # 42: P1 exits on CPU 1. Lazy on: grab (CPU 1 lazy_grabs 2) -> 2, lazy (lazy_entries 2),
    #   mmput -> users 1; idle/1 inherits P. Lazy off: init_mm (no flush), users 1.
    s.exit("P1")
    # 43: P, the last thread, exits on CPU 0. Lazy on: grab (CPU 0 lazy_grabs 1) -> 3, lazy
    #   (CPU 0 lazy_entries 1), mmput -> users 0: exit_mmap: flush_tlb_mm(P), freed_tables
    #   (CPU 0 shootdowns 3). P's mm_cpumask is {0, 1, 3} (CPU 3's bit was never cleared:
    #   step 33 sent it no IPI):
    #   - CPU 0 itself: P loaded, lazy -> leave_mm (CPU 0 leave_mm 1): init_mm; CPU 0 used
    #     ASIDs 1 and 2 only, so slot 0 still holds init_mm -> ASID 0, CR3 write, no flush.
    #   - CPU 1: IPI (its 2nd received), P loaded lazily (idle/1) -> leave_mm (CPU 1
    #     leave_mm 1): init_mm, ASID 0 (CPU 1 used ASID 1 only), CR3 write without flush.
    #   - CPU 3: IPI (its 1st received), Q.exec1 loaded, not P -> clears its mask bit.
    #   CPU 0 ipis_sent 3 (1 at step 10, 2 now). mmdrop -> 2; idle/0 inherits P
    #   (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Lazy off: init_mm (CPU 0 ASID 0, no flush); mmput -> users 0 -> exit_mmap: the same
    #   shootdown and IPIs to CPUs 1 and 3 (mask {0, 1, 3}: bits stay when a CPU switches
    #   away), but no CPU has P loaded: each clears its bit, no leave_mm. P is freed.
    s.exit("P")
    # 44: lazy on: P outlives its users: idle/0 and idle/1 hold it (their active_mm), but it
    #   is loaded nowhere: step 43's flush moved CPUs 0 and 1 to init_mm.
    s.check("P", mm_users=0, mm_count=2, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # 45
    s.check("P", freed=True, loaded_on=[], lazy_tlb=False)
    # 46: CPU 1: idle/1 -> R, kernel -> user. Loaded is init_mm in both modes (lazy on since
    #   step 43's leave_mm): a normal mm switch. CPU 1 slots: init_mm, P -> ASID 2, flush.
    #   Lazy on: rq->prev_mm = P (idle/1's active_mm): mmdrop_lazy_tlb(P) (CPU 1 lazy_drops
    #   3) -> count 1. CPU 1 user_bursts 3.
    s.run(1, "R")
    # 47: CPU 0: idle/0 -> K1, kernel -> kernel: K1 takes idle/0's active_mm (P, lazy on;
    #   init_mm, off) with its reference. No CR3 write; CPU 0 has init_mm loaded (lazy on:
    #   since step 43's leave_mm), so enter_lazy_tlb sets nothing.
    s.run(0, "K1")
    # 48-49: lazy on: K1 alone keeps P alive (its active_mm), but P is loaded nowhere.
    s.check("P", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    s.check(task="K1", mm_users=0, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=True)
    # 50: lazy off: K1 is on init_mm, loaded on CPU 0 only (CPU 1 R, 2 K2.exec1, 3 Q.exec1).
    s.check(task="K1", loaded_on=[0], lazy_on=[], lazy_tlb=False)
    # 51: CPU 3: Q -> idle/3, user -> kernel. Lazy on: enter_lazy_tlb (CPU 3 lazy_entries 2),
    #   mmgrab_lazy_tlb(Q.exec1) -> count 2 (CPU 3 lazy_grabs 2). Lazy off: init_mm, no flush.
    s.idle(3)
    # 52: R exits on CPU 1. Lazy on: grab (CPU 1 lazy_grabs 3) -> 2, lazy (lazy_entries 3),
    #   mmput -> users 0: exit_mmap: flush_tlb_mm(R), freed_tables (CPU 1 shootdowns 1).
    #   R's mm_cpumask is {0, 1, 2} (steps 15, 46, 28):
    #   - CPU 1 itself: R loaded, lazy -> leave_mm (CPU 1 leave_mm 2): init_mm; CPU 1 used
    #     ASIDs 1 and 2 only -> ASID 0, CR3 write without flush.
    #   - CPU 0 (init_mm loaded) and CPU 2 (K2.exec1 loaded): IPIs (CPU 1 ipis_sent 2; CPU 0
    #     ipis_received 1, CPU 2 ipis_received 1); R is not loaded there -> each clears its
    #     mask bit.
    #   mmdrop -> 1; idle/1 inherits R (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Lazy off: init_mm (no flush), mmput -> users 0 -> exit_mmap: the same shootdown and
    #   IPIs to CPUs 0 and 2; no CPU has R loaded: bits cleared, no leave_mm. R is freed.
    s.exit("R")
    # 53: CPU 0: K1 -> Q, kernel -> user. Loaded is init_mm in both modes (lazy on since
    #   step 43): a normal mm switch. CPU 0 slots: init_mm, P, R -> ASID 3, flush.
    #   Lazy on: rq->prev_mm = P: mmdrop_lazy_tlb -> count 0: P is freed (CPU 0 lazy_drops 2).
    #   CPU 0 user_bursts 6.
    s.run(0, "Q")
    # 54-61: the final state.
    s.check("P", freed=True, loaded_on=[])
    # Q.exec1, lazy on: users + idle/3's lazy reference; running on CPU 0, lazy on CPU 3.
    s.check("Q.exec1", mm_users=1, mm_count=2, loaded_on=[0, 3], lazy_on=[3], lazy_tlb=True)
    s.check("Q.exec1", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)
    # R, lazy on: no users, held by idle/1 (its active_mm), loaded nowhere (CPU 1 left it
    #   for init_mm at step 52); lazy off: freed at step 52.
    s.check("R", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    s.check("R", freed=True, loaded_on=[], lazy_tlb=False)
    s.check("K2.exec1", mm_users=1, mm_count=1, loaded_on=[2], lazy_on=[])
    # init_mm: with lazy TLB on, loaded on CPU 1 (leave_mm at step 52; not lazy: the
    #   switch_mm_irqs_off cleared is_lazy), while CPU 3 keeps Q.exec1 lazily; on the idle
    #   CPUs 1 and 3 with lazy TLB off.
    s.check("init_mm", loaded_on=[1], lazy_on=[], lazy_tlb=True)
    s.check("init_mm", loaded_on=[1, 3], lazy_on=[], lazy_tlb=False)

    # 62-63: CPU 0: switches 6 (k->u), 15, 16 (u->u), 43 (k->k), 47 (k->k), 53 (k->u).
    #   Lazy on: CR3 writes 6, 15, 53 (flush), 16 (no flush), 43 (leave_mm to init_mm, no
    #   flush); lazy_entries/grabs at 43; lazy_drops at 6 (init_mm) and 53 (P);
    #   user_bursts 6, 12, 15, 16, 33, 53.
    #   Both modes: shootdowns 3 (fork at 10, munmap at 33, exit_mmap of P at 43);
    #   ipis_sent 3 (CPU 1 at 10; CPUs 1 and 3 at 43); ipis_received 1 (R's exit_mmap at
    #   52); full_flushes 1 (step 10); invlpg 3 (step 33).
    s.counters(cpu=0, lazy_tlb=True, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_user=2, switch_kernel_to_kernel=2, switch_user_to_kernel=0,
               cr3_writes=5, cr3_writes_flush=3, cr3_writes_noflush=2, invlpg=3,
               lazy_entries=1, lazy_grabs=1, lazy_drops=2, shootdowns=3, ipis_sent=3,
               ipis_received=1, full_flushes=1, leave_mm=1, user_bursts=6)
    #   Lazy off: the same 5 CR3 writes, the one at step 43 being exit_mm's init_mm load
    #   (no flush); exit_mmap then found init_mm loaded: no leave_mm.
    s.counters(cpu=0, lazy_tlb=False, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_user=2, switch_kernel_to_kernel=2, switch_user_to_kernel=0,
               cr3_writes=5, cr3_writes_flush=3, cr3_writes_noflush=2, invlpg=3,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=3, ipis_sent=3,
               ipis_received=1, full_flushes=1, leave_mm=0, user_bursts=6)
    # 64-65: CPU 1: switches 7 (k->u), 14 (u->k), 36 (k->u), 42 (k->k), 46 (k->u), 52 (k->k).
    #   Lazy on: CR3 writes 7, 36, 46 (flush), and the leave_mm loads of init_mm at 43 (IPI)
    #   and 52 (own exit_mmap), no flush; lazy_entries/grabs at 14, 42, 52; lazy_drops at
    #   7 (init_mm), 36 (P), 46 (P); user_bursts 7, 36, 46.
    #   Both modes: shootdowns 1 (exit_mmap of R at 52); ipis_sent 2 (CPUs 0 and 2 at 52);
    #   ipis_received 2 (steps 10 and 43); full_flushes 1 (step 10).
    s.counters(cpu=1, lazy_tlb=True, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=1, switch_kernel_to_kernel=2, switch_user_to_user=0,
               cr3_writes=5, cr3_writes_flush=3, cr3_writes_noflush=2, invlpg=0,
               lazy_entries=3, lazy_grabs=3, lazy_drops=3, shootdowns=1, ipis_sent=2,
               ipis_received=2, full_flushes=1, leave_mm=2, user_bursts=3)
    #   Lazy off: CR3 writes 7, 36, 46 (flush) plus init_mm loads (no flush) at 14, 42, 52;
    #   the flushes at 43 and 52 found init_mm loaded: no leave_mm.
    s.counters(cpu=1, lazy_tlb=False, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=1, switch_kernel_to_kernel=2, switch_user_to_user=0,
               cr3_writes=6, cr3_writes_flush=3, cr3_writes_noflush=3, invlpg=0,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=2,
               ipis_received=2, full_flushes=1, leave_mm=0, user_bursts=3)
    # 66-67: CPU 2: switches 8 (k->u), 28 (u->u), 38 (u->k).
    #   Lazy on: CR3 writes 8, 24 (exec), 28, 39 (exec), all flush; invlpg 2 (step 27);
    #   lazy_entries/grabs at 38; lazy_drops at 8 (init_mm) and 39 (R);
    #   user_bursts 8, 24, 27, 28, 39.
    #   Both modes: shootdowns 2 (exit_mmap of Q at 24, mprotect at 27); no IPI sent;
    #   ipis_received 1 (R's exit_mmap at 52: K2.exec1 loaded, bit cleared).
    s.counters(cpu=2, lazy_tlb=True, context_switches=3, switch_kernel_to_user=1,
               switch_user_to_user=1, switch_user_to_kernel=1, switch_kernel_to_kernel=0,
               cr3_writes=4, cr3_writes_flush=4, cr3_writes_noflush=0, invlpg=2,
               lazy_entries=1, lazy_grabs=1, lazy_drops=2, shootdowns=2, ipis_sent=0,
               ipis_received=1, full_flushes=0, leave_mm=0, user_bursts=5)
    #   Lazy off: plus step 38's init_mm load (no flush).
    s.counters(cpu=2, lazy_tlb=False, context_switches=3, switch_kernel_to_user=1,
               switch_user_to_user=1, switch_user_to_kernel=1, switch_kernel_to_kernel=0,
               cr3_writes=5, cr3_writes_flush=4, cr3_writes_noflush=1, invlpg=2,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=2, ipis_sent=0,
               ipis_received=1, full_flushes=0, leave_mm=0, user_bursts=5)
    # 68-69: CPU 3: switches 9 (k->k), 13 (k->u), 29 (k->k), 32 (k->u), 51 (u->k).
    #   Lazy on: CR3 writes 13, 32 (flush); lazy_entries/grabs at 29 and 51; lazy_drops at
    #   13 (init_mm, K1's) and 32 (P); user_bursts 13, 32.
    #   Both modes: no shootdown; ipis_received 1 (P's exit_mmap at 43: Q.exec1 loaded, bit
    #   cleared).
    s.counters(cpu=3, lazy_tlb=True, context_switches=5, switch_kernel_to_kernel=2,
               switch_kernel_to_user=2, switch_user_to_kernel=1, switch_user_to_user=0,
               cr3_writes=2, cr3_writes_flush=2, cr3_writes_noflush=0, invlpg=0,
               lazy_entries=2, lazy_grabs=2, lazy_drops=2, shootdowns=0, ipis_sent=0,
               ipis_received=1, full_flushes=0, leave_mm=0, user_bursts=2)
    #   Lazy off: plus init_mm loads (no flush) at 29 and 51.
    s.counters(cpu=3, lazy_tlb=False, context_switches=5, switch_kernel_to_kernel=2,
               switch_kernel_to_user=2, switch_user_to_kernel=1, switch_user_to_user=0,
               cr3_writes=4, cr3_writes_flush=2, cr3_writes_noflush=2, invlpg=0,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=0, ipis_sent=0,
               ipis_received=1, full_flushes=0, leave_mm=0, user_bursts=2)
    # 70-71: totals = the sums of steps 62-69. Lazy on vs off: the same 12 flushing writes;
    #   lazy on has 4 loads without flush (step 16, and the leave_mm loads at 43 on CPUs 0
    #   and 1 and at 52 on CPU 1); off has 8 (step 16, and the init_mm loads at steps 14,
    #   29, 38, 42, 43, 51, 52). invlpg 5 = 3 (step 33) + 2 (step 27); full_flushes 2 (fork's
    #   whole-mm flush at step 10 on CPUs 0 and 1). Shootdowns 6 (steps 10, 24, 27, 33, 43,
    #   52); IPIs 5 (1 at step 10, 2 at 43, 2 at 52), each received once.
    s.counters(lazy_tlb=True, context_switches=20, switch_kernel_to_user=8,
               switch_user_to_user=3, switch_user_to_kernel=3, switch_kernel_to_kernel=6,
               cr3_writes=16, cr3_writes_flush=12, cr3_writes_noflush=4, invlpg=5,
               lazy_entries=7, lazy_grabs=7, lazy_drops=9, shootdowns=6, ipis_sent=5,
               ipis_received=5, full_flushes=2, leave_mm=3, user_bursts=16)
    s.counters(lazy_tlb=False, context_switches=20, switch_kernel_to_user=8,
               switch_user_to_user=3, switch_user_to_kernel=3, switch_kernel_to_kernel=6,
               cr3_writes=20, cr3_writes_flush=12, cr3_writes_noflush=8, invlpg=5,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=6, ipis_sent=5,
               ipis_received=5, full_flushes=2, leave_mm=0, user_bursts=16)
    return s


if __name__ == "__main__":
    main(build())
