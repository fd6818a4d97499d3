"""kthread_use_mm() / kthread_unuse_mm(): a kernel thread works on a process's mm.

Kernel threads that must touch a user address space (vhost, io_uring workers, USB gadget
drivers) call kthread_use_mm(mm) (kernel/kthread.c): it takes a real reference (mmgrab, not
a lazy one), makes the mm both the thread's mm and active_mm, loads it (switch_mm_irqs_off)
and releases the thread's previous lazily borrowed active_mm (mmdrop_lazy_tlb). While using
it the thread counts as a user task for context-switch classification (tsk->mm != NULL).
kthread_unuse_mm() clears tsk->mm again and turns the real reference into a lazy one
(mmgrab_lazy_tlb + enter_lazy_tlb, then mmdrop): with lazy TLB on the mm stays loaded and
active_mm keeps pointing at it; with lazy TLB off init_mm is loaded instead and the reference
simply goes.

Process A runs on CPU 0, which then idles (idle/0 keeps A lazily with lazy TLB on). The
kernel thread K on CPU 1 uses A's mm, maps two pages and unmaps one (a local INVLPG on
CPU 1; A's tlb_gen advances), and unuses it. When A runs again on CPU 0, its old TLB
generation there forces a flushing CR3 write. At the end K and A exit; with lazy TLB on, A
outlives its last user as the active_mm of both CPUs' idle tasks (two lazy references), but
is loaded on neither: exit_mmap()'s whole-mm flush with freed_tables makes both lazy CPUs
leave it for init_mm (leave_mm; CPU 1 by IPI).

Lazy TLB shootdown (CONFIG_MMU_LAZY_TLB_SHOOTDOWN) switches and writes CR3 as lazy TLB on
does, but mmgrab_lazy_tlb() and mmdrop_lazy_tlb() take and drop no reference: mm_count is
the users' reference plus K's real kthread_use_mm hold (mmgrab) only, so unuse_mm's mmdrop
brings it back to 1 even though K keeps A lazily, and lazy_grabs and lazy_drops stay 0. A is
freed at its last exit: exit_mmap's mmdrop is the last one, and __mmdrop's
cleanup_lazy_tlbs() IPIs CPU 1 (still in A's mm_cpumask after leave_mm) and runs locally on
CPU 0, moving the tasks still on A (the exiting A, idle/1) to init_mm, which both CPUs
already have loaded: one more IPI than with lazy TLB on, no more CR3 writes.

PCID off (--pcid=off): choose_new_asid() (arch/x86/mm/tlb.c) returns ASID 0 with need_flush
when the CPU has no PCID, so every CR3 write flushes, the loads of init_mm included. The
number of CR3 writes is the same; only cr3_writes_flush and cr3_writes_noflush are split by
PCID mode.

2 CPUs. user_bursts is not expected on CPU 1 nor in the totals: the spec leaves open whether
mmap/munmap by a kernel thread inside use_mm runs a ring-3 burst.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402

LAZY = ["on", "shootdown"]  # the two modes with lazy TLB switching


def build():
    s = Scenario("kthread_use_mm", cpus=2)

    s.spawn("A", pages=4)  # step 0: mm A 1/1
    s.kthread("K")         # step 1

    # step 2: CPU 0: idle/0 -> A, kernel -> user: ASID 1 (next_asid 2), flushing CR3 write
    #   (PCID off: ASID 0, flushing); lazy on: mmdrop_lazy_tlb(init_mm) (lazy_drops 1);
    #   shootdown: nothing dropped. user_bursts 1.
    s.run(0, "A")
    # step 3: CPU 0: A -> idle/0, user -> kernel.
    #   Lazy on: enter_lazy_tlb (lazy_entries 1); idle/0->active_mm = A; mmgrab_lazy_tlb(A):
    #   count 2 (lazy_grabs 1); no CR3 write.
    #   Shootdown: the same without the reference: count 1.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0, CR3 write without flush (PCID off:
    #   with flush).
    s.idle(0)
    # step 4: CPU 1: idle/1 -> K, kernel -> kernel. enter_lazy_tlb: CPU 1 has init_mm loaded
    #   -> stays non-lazy. K->active_mm = init_mm (from idle/1). No CR3 write in any mode.
    s.run(1, "K")
    # step 5: lazy on: count 2 = users' reference + idle/0's lazy one; CPU 0 lazy on A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0], lazy_on=[0], lazy_tlb=True)
    # step 6: shootdown: idle/0's borrow is uncounted: count 1; CPU 0 lazy on A.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[0], lazy_tlb="shootdown")
    s.check("A", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=False)
    # step 8: K runs on init_mm: loaded on CPU 1 (lazy on and shootdown: CPU 0 kept A) ...
    s.check(task="K", loaded_on=[1], lazy_on=[], lazy_tlb=LAZY)
    #   ... or on both CPUs (lazy off: CPU 0 loaded init_mm at step 3).
    s.check(task="K", loaded_on=[0, 1], lazy_on=[], lazy_tlb=False)

    # step 10: kthread_use_mm(A) by K on CPU 1.
    #   mmgrab(A): count +1 (a real reference, in every mode: no lazy_grabs).
    #   K->mm = K->active_mm = A. switch_mm_irqs_off(A): init_mm != A, CPU 1 has no slot for
    #   A -> ASID 1 (next_asid 2), flushing CR3 write (CPU 1 cr3_writes 1; PCID off: ASID 0,
    #   flushing).
    #   Lazy on: mmdrop_lazy_tlb(init_mm), K's old active_mm (CPU 1 lazy_drops 1): A count 3.
    #   Shootdown: mmdrop_lazy_tlb drops nothing: A count 2.
    #   Lazy off: no drop: A count 2.
    s.use_mm("K", "A")
    # step 11: lazy on: 3 = users + idle/0's lazy reference + K's use_mm hold. CPU 1 is not
    #   lazy: K uses A for real.
    s.check("A", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    # step 12: shootdown: 2 = users + K's use_mm hold (idle/0's borrow is uncounted).
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[0], lazy_tlb="shootdown")
    # step 13: lazy off: 2 = users + K's use_mm hold.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[1], lazy_on=[], lazy_tlb=False)
    # step 14: K's active_mm is A; mm_users unchanged (use_mm takes no mm_users reference).
    s.check(task="K", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[0],
            lazy_tlb="shootdown")
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[1], lazy_on=[], lazy_tlb=False)

    # step 17: K maps 2 pages in A (current->mm): no tlb_gen change, no flush.
    s.mmap("K", pages=2)
    # step 18: K unmaps the last page: A's tlb_gen + 1; A is loaded on CPU 1 (this CPU) ->
    #   one INVLPG there (CPU 1 invlpg 1; flush_tlb_mm_range: CPU 1 shootdowns 1). CPU 0 is
    #   in A's mm_cpumask but runs no task on A, so should_flush_tlb skips it (no IPI): with
    #   lazy TLB on or shootdown it is lazily on A and catches up by tlb_gen when A runs
    #   there again (step 29); with lazy TLB off it has init_mm loaded.
    s.munmap("K", pages=1)
    # step 19: CPU 1 so far, alike in every mode: 1 switch (step 4, k->k); 1 CR3 write
    #   (step 10, flushing with or without PCID); the munmap's shootdown and INVLPG, no IPI.
    s.counters(cpu=1, context_switches=1, switch_kernel_to_kernel=1, cr3_writes=1,
               cr3_writes_flush=1, cr3_writes_noflush=0, invlpg=1, lazy_entries=0,
               lazy_grabs=0, shootdowns=1, ipis_sent=0)
    # step 20: lazy on: lazy_drops 1 (step 10, init_mm) ...
    s.counters(cpu=1, lazy_tlb=True, lazy_drops=1)
    # step 21: ... which shootdown (no lazy references) and lazy off (no drop) do not have.
    s.counters(cpu=1, lazy_tlb=["shootdown", "off"], lazy_drops=0)

    # step 22: kthread_unuse_mm() by K on CPU 1. K->mm = NULL.
    #   Lazy on: mmgrab_lazy_tlb(A): count 4 (CPU 1 lazy_grabs 1); enter_lazy_tlb: A loaded,
    #   not lazy -> lazy (CPU 1 lazy_entries 1); mmdrop(A): count 3 (not a lazy drop).
    #   K->active_mm stays A: the real reference became a lazy one.
    #   Shootdown: mmgrab_lazy_tlb takes nothing; enter_lazy_tlb (CPU 1 lazy_entries 1);
    #   mmdrop(A): count 1. K->active_mm stays A, uncounted.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0, CR3 write without flush (PCID off:
    #   with flush); K->active_mm = init_mm; mmdrop(A): count 1.
    s.unuse_mm("K")
    # step 23: lazy on: 3 = users + idle/0's and K's lazy references; both CPUs lazy on A.
    s.check("A", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0, 1], lazy_tlb=True)
    # step 24: shootdown: the users' reference alone; both CPUs lazy on A.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[0, 1],
            lazy_tlb="shootdown")
    # step 25: lazy off: back to the users' reference; A loaded nowhere.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=False)
    # step 26: K's active_mm: A, lazily (lazy on, shootdown); init_mm on both CPUs (lazy off).
    s.check(task="K", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0, 1], lazy_tlb=True)
    s.check(task="K", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[0, 1],
            lazy_tlb="shootdown")
    s.check(task="K", loaded_on=[0, 1], lazy_on=[], lazy_tlb=False)

    # step 29: CPU 0: idle/0 -> A, kernel -> user.
    #   Lazy on and shootdown: switch_mm_irqs_off(A): loaded == A and was lazy;
    #   ctxs[1].tlb_gen (PCID off: ctxs[0]) is A's tlb_gen from step 2, behind A's (the
    #   munmap at step 18) -> flushing CR3 write with the same ASID (CPU 0 cr3_writes 2).
    #   rq->prev_mm = A (idle/0's active_mm): lazy on: mmdrop_lazy_tlb(A): count 2 (CPU 0
    #   lazy_drops 2); shootdown: nothing dropped, count 1.
    #   Lazy off: init_mm != A; ctxs[1] holds A but at an older tlb_gen -> ASID 1, flushing
    #   CR3 write (CPU 0 cr3_writes 3; PCID off: ASID 0, flushing). All: user_bursts 2 on
    #   CPU 0.
    s.run(0, "A")
    # step 30: lazy on: 2 = users + K's lazy reference (CPU 1).
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    # step 31: shootdown: 1 = users; CPU 1 (K) still lazy on A.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[1], lazy_tlb="shootdown")
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)

    # step 33: K exits on CPU 1 (a kernel thread, no longer using an mm: no exit_mm):
    #   kernel -> kernel switch to idle/1. Lazy on: idle/1 inherits active_mm = A with K's
    #   lazy reference (count unchanged); CPU 1 already lazy. Shootdown: idle/1 inherits A,
    #   uncounted. Lazy off: nothing else.
    s.exit("K")
    # step 34: lazy on: unchanged, the reference moved from K to idle/1.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    # step 35: shootdown: unchanged too (count 1).
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[1], lazy_tlb="shootdown")

    # step 36: A exits on CPU 0.
    #   Lazy on: mmgrab_lazy_tlb(A): 3 (CPU 0 lazy_grabs 2); enter_lazy_tlb (CPU 0
    #   lazy_entries 2); mmput: users 0 -> exit_mmap: flush_tlb_mm(A) with freed_tables
    #   (CPU 0 shootdowns 1, A's tlb_gen + 1); A's mm_cpumask is {0, 1}:
    #   - CPU 0 (freed_tables: flushes itself): A loaded, lazy -> leave_mm (CPU 0 leave_mm 1):
    #     switch_mm_irqs_off(init_mm); CPU 0 handed out ASID 1 only, so slot 0 still holds
    #     init_mm at its generation -> ASID 0, CR3 write without flush (PCID off: with flush).
    #   - CPU 1: IPI (CPU 0 ipis_sent 1, CPU 1 ipis_received 1): A loaded, lazy (idle/1) ->
    #     leave_mm (CPU 1 leave_mm 1): init_mm, ASID 0 (CPU 1 also used only ASID 1), CR3
    #     write without flush (PCID off: with flush). idle/1's active_mm stays A.
    #   Then mmdrop: 2. Kernel -> kernel to idle/0, which inherits active_mm = A
    #   (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Shootdown: no grab (count 1); enter_lazy_tlb (CPU 0 lazy_entries 2); exit_mmap: the
    #   same flush, IPI and two leave_mm. Then mmdrop -> count 0 -> __mmdrop(A) ->
    #   cleanup_lazy_tlbs(A): on_each_cpu_mask(mm_cpumask(A) = {0, 1}: leave_mm keeps the
    #   bits), do_shoot_lazy_tlb: on CPU 0 locally, the exiting A's active_mm A -> init_mm;
    #   CPU 1 by IPI (CPU 0 ipis_sent 2, CPU 1 ipis_received 2), idle/1's active_mm A ->
    #   init_mm. Both CPUs have init_mm loaded already: no CR3 write, no leave_mm. A is
    #   freed. Kernel -> kernel to idle/0, which inherits init_mm.
    #   Lazy off: init_mm loaded (ASID 0, no flush; PCID off: flush); mmput: users 0 ->
    #   exit_mmap: flush_tlb_mm(A) (CPU 0 shootdowns 1); the mask is still {0, 1} (bits stay
    #   when a CPU switches away): CPU 1 gets the freed_tables IPI (CPU 0 ipis_sent 1, CPU 1
    #   ipis_received 1); CPU 1 and CPU 0 have init_mm loaded, not A -> each clears its
    #   mask bit: no flush, no leave_mm. A is freed. Then k -> k.
    s.exit("A")
    # step 37: lazy on: A outlives its users, held by idle/0 and idle/1 (their active_mm),
    #   but loaded nowhere: both CPUs left it for init_mm at step 36.
    s.check("A", mm_users=0, mm_count=2, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # step 38: shootdown and lazy off: freed at step 36.
    s.check("A", freed=True, loaded_on=[], lazy_tlb=["shootdown", "off"])

    # step 39: CPU 0: switches at 2 (k->u), 3 (u->k), 29 (k->u), 36 (k->k).
    #   Lazy on and shootdown: CR3 writes at 2 and 29 (flushing) and 36 (leave_mm to
    #   init_mm); lazy_entries at 3 and 36; bursts at 2 and 29; shootdowns 1 (exit_mmap
    #   at 36).
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=3, invlpg=0, lazy_entries=2, shootdowns=1, ipis_received=0,
               leave_mm=1, user_bursts=2)
    # step 40: lazy on: lazy_grabs at 3 and 36; lazy_drops at 2 (init_mm) and 29 (A);
    #   ipis_sent 1 (exit_mmap's flush at 36).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=2, lazy_drops=2, ipis_sent=1)
    # step 41: shootdown: no lazy references; ipis_sent 2 at 36: exit_mmap's flush IPI and
    #   cleanup_lazy_tlbs' do_shoot_lazy_tlb IPI, both to CPU 1.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_sent=2)
    # step 42: lazy on and shootdown with PCIDs: 2 and 29 flush; 36 (init_mm, ASID 0) not.
    s.counters(cpu=0, lazy_tlb=LAZY, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=1)
    # step 43: PCID off: all 3 flush (choose_new_asid: ASID 0, need_flush).
    s.counters(cpu=0, lazy_tlb=LAZY, pcid=False, cr3_writes_flush=3, cr3_writes_noflush=0)
    # step 44: lazy off: CR3 writes at 2, 3 (init_mm), 29, 36 (exit_mm's init_mm load);
    #   exit_mmap found init_mm loaded: no leave_mm. Shootdowns 1, ipis_sent 1 (step 36).
    s.counters(cpu=0, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=4, invlpg=0, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=1, ipis_sent=1, ipis_received=0, leave_mm=0, user_bursts=2)
    # step 45: lazy off with PCIDs: 2 and 29 flush; 3 and 36 (init_mm) do not.
    s.counters(cpu=0, lazy_tlb=False, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=2)
    # step 46: lazy off, PCID off: all 4 flush.
    s.counters(cpu=0, lazy_tlb=False, pcid=False, cr3_writes_flush=4, cr3_writes_noflush=0)
    # step 47: CPU 1: switches at 4 and 33 (both k->k); CR3 write at 10 (flush).
    #   Lazy on and shootdown: plus the leave_mm load at 36 (the exit_mmap IPI; init_mm);
    #   lazy_entries at 22; invlpg 1 (step 18); shootdowns 1 (munmap at 18).
    s.counters(cpu=1, lazy_tlb=LAZY, context_switches=2, switch_kernel_to_kernel=2,
               switch_kernel_to_user=0, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=2, invlpg=1, lazy_entries=1, shootdowns=1, ipis_sent=0, leave_mm=1)
    # step 48: lazy on: lazy_grabs at 22, lazy_drops at 10 (init_mm); ipis_received 1 (36).
    s.counters(cpu=1, lazy_tlb=True, lazy_grabs=1, lazy_drops=1, ipis_received=1)
    # step 49: shootdown: no lazy references; ipis_received 2 (the flush and the
    #   do_shoot_lazy_tlb IPI at 36; the second found init_mm loaded: no leave_mm).
    s.counters(cpu=1, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_received=2)
    # step 50: lazy off: plus step 22's init_mm load; the IPI at 36 found init_mm loaded: no
    #   leave_mm.
    s.counters(cpu=1, lazy_tlb=False, context_switches=2, switch_kernel_to_kernel=2,
               switch_kernel_to_user=0, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=2, invlpg=1, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=1, ipis_sent=0, ipis_received=1, leave_mm=0)
    # step 51: with PCIDs, in every lazy mode: 10 flushes; the init_mm load (36 by leave_mm,
    #   or 22 with lazy TLB off) does not.
    s.counters(cpu=1, pcid=True, cr3_writes_flush=1, cr3_writes_noflush=1)
    # step 52: PCID off: both flush.
    s.counters(cpu=1, pcid=False, cr3_writes_flush=2, cr3_writes_noflush=0)
    # step 53: totals (steps 39-46 + 47-52), without user_bursts (see the docstring). The
    #   munmap's one page was an INVLPG, not a full flush, and exit_mmap's whole-mm flush met
    #   only lazy CPUs (lazy on, shootdown: leave_mm) or CPUs on init_mm (off): no full flush
    #   either. Shootdowns 2 (munmap at 18, exit_mmap at 36).
    s.counters(lazy_tlb=LAZY, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=3, switch_user_to_user=0,
               cr3_writes=5, invlpg=1, lazy_entries=3, shootdowns=2, leave_mm=2,
               full_flushes=0)
    # step 54: lazy on: 3 grabs, 3 drops; one IPI (step 36), received once.
    s.counters(lazy_tlb=True, lazy_grabs=3, lazy_drops=3, ipis_sent=1, ipis_received=1)
    # step 55: shootdown: no lazy references; two IPIs (step 36), each received once.
    s.counters(lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_sent=2,
               ipis_received=2)
    # step 56: lazy on and shootdown with PCIDs: 3 flushing (2, 10, 29), 2 not (leave_mm
    #   at 36 on both CPUs).
    s.counters(lazy_tlb=LAZY, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=2)
    # step 57: PCID off: all 5 flush.
    s.counters(lazy_tlb=LAZY, pcid=False, cr3_writes_flush=5, cr3_writes_noflush=0)
    # step 58: lazy off.
    s.counters(lazy_tlb=False, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=3, switch_user_to_user=0,
               cr3_writes=6, invlpg=1, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=2, ipis_sent=1, ipis_received=1, leave_mm=0, full_flushes=0)
    # step 59: lazy off with PCIDs: 3 flushing (2, 10, 29), 3 not (init_mm at 3, 22, 36).
    s.counters(lazy_tlb=False, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=3)
    # step 60: lazy off, PCID off: all 6 flush.
    s.counters(lazy_tlb=False, pcid=False, cr3_writes_flush=6, cr3_writes_noflush=0)
    return s


if __name__ == "__main__":
    main(build())
