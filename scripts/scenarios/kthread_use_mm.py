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

2 CPUs. user_bursts is not expected on CPU 1 nor in the totals: the spec leaves open whether
mmap/munmap by a kernel thread inside use_mm runs a ring-3 burst.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402


def build():
    s = Scenario("kthread_use_mm", cpus=2)

    s.spawn("A", pages=4)  # step 0: mm A 1/1
    s.kthread("K")         # step 1

    # step 2: CPU 0: idle/0 -> A, kernel -> user: ASID 1 (next_asid 2), flushing CR3 write;
    #   lazy on: mmdrop_lazy_tlb(init_mm) (lazy_drops 1). user_bursts 1.
    s.run(0, "A")
    # step 3: CPU 0: A -> idle/0, user -> kernel.
    #   Lazy on: enter_lazy_tlb (lazy_entries 1); idle/0->active_mm = A; mmgrab_lazy_tlb(A):
    #   count 2 (lazy_grabs 1); no CR3 write.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0, CR3 write without flush.
    s.idle(0)
    # step 4: CPU 1: idle/1 -> K, kernel -> kernel. enter_lazy_tlb: CPU 1 has init_mm loaded
    #   -> stays non-lazy. K->active_mm = init_mm (from idle/1). No CR3 write in either mode.
    s.run(1, "K")
    # step 5: lazy on: count 2 = users' reference + idle/0's lazy one; CPU 0 lazy on A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0], lazy_on=[0], lazy_tlb=True)
    s.check("A", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=False)
    # step 7: K runs on init_mm: loaded on CPU 1 (lazy on: CPU 0 kept A) ...
    s.check(task="K", loaded_on=[1], lazy_on=[], lazy_tlb=True)
    #   ... or on both CPUs (lazy off: CPU 0 loaded init_mm at step 3).
    s.check(task="K", loaded_on=[0, 1], lazy_on=[], lazy_tlb=False)

    # step 9: kthread_use_mm(A) by K on CPU 1.
    #   mmgrab(A): count +1 (a real reference: no lazy_grabs). K->mm = K->active_mm = A.
    #   switch_mm_irqs_off(A): init_mm != A, CPU 1 has no slot for A -> ASID 1 (next_asid 2),
    #   flushing CR3 write (CPU 1 cr3_writes 1).
    #   Lazy on: mmdrop_lazy_tlb(init_mm), K's old active_mm (CPU 1 lazy_drops 1): A count 3.
    #   Lazy off: no drop: A count 2.
    s.use_mm("K", "A")
    # step 10: lazy on: 3 = users + idle/0's lazy reference + K's use_mm hold. CPU 1 is not
    #   lazy: K uses A for real.
    s.check("A", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    #   lazy off: 2 = users + K's use_mm hold.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[1], lazy_on=[], lazy_tlb=False)
    # step 12: K's active_mm is A; mm_users unchanged (use_mm takes no mm_users reference).
    s.check(task="K", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[1], lazy_on=[], lazy_tlb=False)

    # step 14: K maps 2 pages in A (current->mm): no tlb_gen change, no flush.
    s.mmap("K", pages=2)
    # step 15: K unmaps the last page: A's tlb_gen + 1; A is loaded on CPU 1 (this CPU) ->
    #   one INVLPG there (CPU 1 invlpg 1; flush_tlb_mm_range: CPU 1 shootdowns 1). CPU 0 is
    #   in A's mm_cpumask but runs no task on A, so should_flush_tlb skips it (no IPI): with
    #   lazy TLB on it is lazily on A and catches up by tlb_gen when A runs there again
    #   (step 23); with lazy TLB off it has init_mm loaded.
    s.munmap("K", pages=1)
    # step 16: CPU 1 so far: 1 switch (step 4, k->k); 1 CR3 write (step 9, flush);
    #   lazy on: lazy_drops 1 (step 9, init_mm). Both: the munmap's shootdown, no IPI.
    s.counters(cpu=1, lazy_tlb=True, context_switches=1, switch_kernel_to_kernel=1,
               cr3_writes=1, cr3_writes_flush=1, cr3_writes_noflush=0, invlpg=1,
               lazy_entries=0, lazy_grabs=0, lazy_drops=1, shootdowns=1, ipis_sent=0)
    s.counters(cpu=1, lazy_tlb=False, context_switches=1, switch_kernel_to_kernel=1,
               cr3_writes=1, cr3_writes_flush=1, cr3_writes_noflush=0, invlpg=1,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=0)

    # step 18: kthread_unuse_mm() by K on CPU 1. K->mm = NULL.
    #   Lazy on: mmgrab_lazy_tlb(A): count 4 (CPU 1 lazy_grabs 1); enter_lazy_tlb: A loaded,
    #   not lazy -> lazy (CPU 1 lazy_entries 1); mmdrop(A): count 3 (not a lazy drop).
    #   K->active_mm stays A: the real reference became a lazy one.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0, CR3 write without flush;
    #   K->active_mm = init_mm; mmdrop(A): count 1.
    s.unuse_mm("K")
    # step 19: lazy on: 3 = users + idle/0's and K's lazy references; both CPUs lazy on A.
    s.check("A", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0, 1], lazy_tlb=True)
    #   lazy off: back to the users' reference; A loaded nowhere.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=False)
    # step 21: K's active_mm: A, lazily (lazy on); init_mm on both CPUs (lazy off).
    s.check(task="K", mm_users=1, mm_count=3, loaded_on=[0, 1], lazy_on=[0, 1], lazy_tlb=True)
    s.check(task="K", loaded_on=[0, 1], lazy_on=[], lazy_tlb=False)

    # step 23: CPU 0: idle/0 -> A, kernel -> user.
    #   Lazy on: switch_mm_irqs_off(A): loaded == A and was lazy; ctxs[1].tlb_gen is A's
    #   tlb_gen from step 2, behind A's (the munmap at step 15) -> flushing CR3 write with
    #   the same ASID 1 (CPU 0 cr3_writes 2). rq->prev_mm = A (idle/0's active_mm):
    #   mmdrop_lazy_tlb(A): count 2 (CPU 0 lazy_drops 2).
    #   Lazy off: init_mm != A; ctxs[1] holds A but at an older tlb_gen -> ASID 1, flushing
    #   CR3 write (CPU 0 cr3_writes 3). Both: user_bursts 2 on CPU 0.
    s.run(0, "A")
    # step 24: lazy on: 2 = users + K's lazy reference (CPU 1).
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)

    # step 26: K exits on CPU 1 (a kernel thread, no longer using an mm: no exit_mm):
    #   kernel -> kernel switch to idle/1. Lazy on: idle/1 inherits active_mm = A with K's
    #   lazy reference (count unchanged); CPU 1 already lazy. Lazy off: nothing else.
    s.exit("K")
    # step 27: lazy on: unchanged, the reference moved from K to idle/1.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)

    # step 28: A exits on CPU 0.
    #   Lazy on: mmgrab_lazy_tlb(A): 3 (CPU 0 lazy_grabs 2); enter_lazy_tlb (CPU 0
    #   lazy_entries 2); mmput: users 0 -> exit_mmap: flush_tlb_mm(A) with freed_tables
    #   (CPU 0 shootdowns 1, A's tlb_gen + 1); A's mm_cpumask is {0, 1}:
    #   - CPU 0 (freed_tables: flushes itself): A loaded, lazy -> leave_mm (CPU 0 leave_mm 1):
    #     switch_mm_irqs_off(init_mm); CPU 0 handed out ASID 1 only, so slot 0 still holds
    #     init_mm at its generation -> ASID 0, CR3 write without flush.
    #   - CPU 1: IPI (CPU 0 ipis_sent 1, CPU 1 ipis_received 1): A loaded, lazy (idle/1) ->
    #     leave_mm (CPU 1 leave_mm 1): init_mm, ASID 0 (CPU 1 also used only ASID 1), CR3
    #     write without flush. idle/1's active_mm stays A.
    #   Then mmdrop: 2. Kernel -> kernel to idle/0, which inherits active_mm = A
    #   (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Lazy off: init_mm loaded (ASID 0, no flush); mmput: users 0 -> exit_mmap:
    #   flush_tlb_mm(A) (CPU 0 shootdowns 1); the mask is still {0, 1} (bits stay when a CPU
    #   switches away): CPU 1 gets the freed_tables IPI (CPU 0 ipis_sent 1, CPU 1
    #   ipis_received 1); CPU 1 and CPU 0 have init_mm loaded, not A -> each clears its
    #   mask bit: no flush, no leave_mm. A is freed. Then k -> k.
    s.exit("A")
    # step 29: lazy on: A outlives its users, held by idle/0 and idle/1 (their active_mm),
    #   but loaded nowhere: both CPUs left it for init_mm at step 28.
    s.check("A", mm_users=0, mm_count=2, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    s.check("A", freed=True, loaded_on=[], lazy_tlb=False)

    # step 31: CPU 0: switches at 2 (k->u), 3 (u->k), 23 (k->u), 28 (k->k).
    #   Lazy on: CR3 writes at 2 and 23 (flushing) and 28 (leave_mm to init_mm, no flush);
    #   lazy_entries/grabs at 3 and 28; lazy_drops at 2 (init_mm) and 23 (A); bursts at 2
    #   and 23. Both modes: shootdowns 1 and ipis_sent 1 (exit_mmap at 28).
    s.counters(cpu=0, lazy_tlb=True, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=3, cr3_writes_flush=2, cr3_writes_noflush=1, invlpg=0,
               lazy_entries=2, lazy_grabs=2, lazy_drops=2, shootdowns=1, ipis_sent=1,
               ipis_received=0, leave_mm=1, user_bursts=2)
    #   Lazy off: CR3 writes at 2 (flush), 3 (no flush), 23 (flush), 28 (exit_mm's init_mm
    #   load, no flush); exit_mmap found init_mm loaded: no leave_mm.
    s.counters(cpu=0, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=4, cr3_writes_flush=2, cr3_writes_noflush=2, invlpg=0,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=1,
               ipis_received=0, leave_mm=0, user_bursts=2)
    # step 33: CPU 1: switches at 4 and 26 (both k->k); CR3 write at 9 (flush).
    #   Lazy on: plus the leave_mm load at 28 (the exit_mmap IPI; init_mm, no flush);
    #   lazy_entries/grabs at 18, lazy_drops at 9 (init_mm); invlpg 1 (step 15).
    #   Both modes: shootdowns 1 (munmap at 15), ipis_received 1 (step 28).
    s.counters(cpu=1, lazy_tlb=True, context_switches=2, switch_kernel_to_kernel=2,
               switch_kernel_to_user=0, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=2, cr3_writes_flush=1, cr3_writes_noflush=1, invlpg=1,
               lazy_entries=1, lazy_grabs=1, lazy_drops=1, shootdowns=1, ipis_sent=0,
               ipis_received=1, leave_mm=1)
    #   Lazy off: plus step 18's init_mm load (no flush); the IPI at 28 found init_mm
    #   loaded: no leave_mm.
    s.counters(cpu=1, lazy_tlb=False, context_switches=2, switch_kernel_to_kernel=2,
               switch_kernel_to_user=0, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=2, cr3_writes_flush=1, cr3_writes_noflush=1, invlpg=1,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=0,
               ipis_received=1, leave_mm=0)
    # step 35: totals (steps 31 + 33), without user_bursts (see the docstring). The munmap's
    #   one page was an INVLPG, not a full flush, and exit_mmap's whole-mm flush met only
    #   lazy CPUs (lazy on: leave_mm) or CPUs on init_mm (off): no full flush either.
    #   Shootdowns 2 (munmap at 15, exit_mmap at 28), one IPI (step 28).
    s.counters(lazy_tlb=True, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=3, switch_user_to_user=0,
               cr3_writes=5, cr3_writes_flush=3, cr3_writes_noflush=2, invlpg=1,
               lazy_entries=3, lazy_grabs=3, lazy_drops=3, shootdowns=2, ipis_sent=1,
               ipis_received=1, leave_mm=2, full_flushes=0)
    s.counters(lazy_tlb=False, context_switches=6, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=3, switch_user_to_user=0,
               cr3_writes=6, cr3_writes_flush=3, cr3_writes_noflush=3, invlpg=1,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=2, ipis_sent=1,
               ipis_received=1, leave_mm=0, full_flushes=0)
    return s


if __name__ == "__main__":
    main(build())
