"""Three threads of one process, then a kernel thread borrows their mm.

Documentation/mm/active_mm.rst in action: the threads A, A1, A2 share one mm_struct, counted
by mm_users (3: one per thread) and holding one mm_count reference for all of them (1).
When CPU 0 switches from a thread of A to a kernel thread K, K has no mm of its own (K->mm ==
NULL) and borrows the previous one as its active_mm:

- lazy TLB on (Linux today): context_switch() calls enter_lazy_tlb() and mmgrab_lazy_tlb():
  A stays loaded on CPU 0 in lazy TLB mode, no CR3 write, and A's mm_count is 2.
- lazy TLB shootdown (CONFIG_MMU_LAZY_TLB_SHOOTDOWN, powerpc's variant): the same lazy
  switching and the same CR3 writes, but mmgrab_lazy_tlb() and mmdrop_lazy_tlb() take and
  drop no reference (include/linux/sched/mm.h: only with CONFIG_MMU_LAZY_TLB_REFCOUNT). K
  borrows A uncounted: mm_count stays 1, and lazy_grabs and lazy_drops stay 0 (the idle
  tasks' init_mm drops included). No mm is freed here, so cleanup_lazy_tlbs() never runs.
- lazy TLB off (Linux 4.14-4.18 without lazy TLB): CPU 0 loads init_mm instead (a CR3 write,
  no flush with PCID: init_mm keeps ASID 0), nothing is borrowed, and mm_count stays 1.

Then CPU 0 goes back to a thread of A. With lazy TLB (on or shootdown) the mm is still loaded
and up to date: switch_mm_irqs_off() writes no CR3 at all, and (lazy on only)
finish_task_switch() drops K's lazy reference (mmdrop_lazy_tlb). Without lazy TLB, A must be
loaded again: a CR3 write, but without a flush, because CPU 0's ASID 1 still holds A's
context at A's current tlb_gen.

PCID off (--pcid=off): without X86_FEATURE_PCID, choose_new_asid() (arch/x86/mm/tlb.c)
returns ASID 0 with need_flush for every switch to another mm, so every CR3 write flushes.
The CR3 writes themselves are the same (the same-mm paths never reach choose_new_asid): lazy
TLB on and shootdown write CR3 only for the first loads of A, which flush anyway; lazy TLB
off's loads of init_mm and of A again flush too. Only cr3_writes_flush and
cr3_writes_noflush are split by PCID mode ("pcid": true = real or modeled PCIDs).

2 CPUs. CPU 1 runs A1 all along, so A stays loaded there.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402

LAZY = ["on", "shootdown"]  # the two modes with lazy TLB switching


def build():
    s = Scenario("threads_then_kthread", cpus=2)

    # step 0-2: A and two more threads. spawn: mm "A", mm_users = mm_count = 1.
    # clone_vm twice: mmget each time -> mm_users 3. No switch, no CR3 write, no counter.
    s.spawn("A", pages=4)
    s.clone_vm("A", "A1")
    s.clone_vm("A", "A2")
    # step 3: K has mm = NULL and no active_mm until it first runs.
    s.kthread("K")

    # step 4: CPU 0: idle/0 -> A, kernel -> user (idle's mm is NULL).
    #   switch_mm_irqs_off(A): loaded init_mm != A; no ctxs slot holds A's ctx_id ->
    #   ASID next_asid = 1 (next_asid -> 2), flushing CR3 write (cr3_writes 1, flush 1).
    #   PCID off: ASID 0, flushing as well.
    #   Lazy on: rq->prev_mm = idle/0's active_mm (init_mm); finish_task_switch() ->
    #   mmdrop_lazy_tlb(init_mm): lazy_drops 1 (the boot idle task's lazy reference).
    #   Shootdown: the same prev_mm, but mmdrop_lazy_tlb() drops nothing (lazy_drops 0).
    #   Lazy off: no prev_mm, no drop. All: A runs in ring 3 (user_bursts 1).
    s.run(0, "A")
    # step 5: CPU 1: idle/1 -> A1, the same on CPU 1: ASID 1, flushing CR3 write,
    #   lazy_drops 1 (lazy on only), user_bursts 1.
    s.run(1, "A1")
    # step 6: users 3 (A, A1, A2); count 1 (the users' reference); A loaded on both CPUs
    #   (loaded_mm := A at steps 4 and 5); is_lazy was cleared by both switches.
    s.check("A", mm_users=3, mm_count=1, loaded_on=[0, 1], lazy_on=[])

    # step 7: CPU 0: A -> A2, user -> user in the same mm: switch_mm_irqs_off(A) with
    #   loaded_mm == A and not lazy does nothing (no CR3 write). A2 runs in ring 3
    #   (CPU 0 user_bursts 2). Every mode alike.
    s.run(0, "A2")

    # step 8: CPU 0: A2 -> K, user -> kernel.
    #   Lazy on: enter_lazy_tlb: loaded_mm is A (not init_mm) -> is_lazy true
    #   (lazy_entries 1); K->active_mm = A; mmgrab_lazy_tlb(A): mm_count 2 (lazy_grabs 1).
    #   No CR3 write.
    #   Shootdown: the same, but mmgrab_lazy_tlb() takes no reference: mm_count stays 1
    #   (lazy_grabs 0).
    #   Lazy off: switch_mm_irqs_off(init_mm): A != init_mm; ctxs[0] holds init_mm at its
    #   (never changing) tlb_gen -> ASID 0, no flush: cr3_writes 2 on CPU 0, noflush 1.
    #   PCID off: ASID 0 with a flush (flush 2). K->active_mm = init_mm, no reference taken.
    s.run(0, "K")
    # step 9: lazy on: count 2 = 1 (users > 0) + 1 (K's lazy reference); A still loaded on
    #   CPU 0 (no CR3 write) and CPU 0 is lazy.
    s.check("A", mm_users=3, mm_count=2, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    # step 10: shootdown: K's borrow is not counted: count 1 (users > 0); loaded and lazy as
    #   with lazy on.
    s.check("A", mm_users=3, mm_count=1, loaded_on=[0, 1], lazy_on=[0], lazy_tlb="shootdown")
    # step 11: lazy off: count 1; CPU 0 loaded init_mm at step 8, so only CPU 1 has A.
    s.check("A", mm_users=3, mm_count=1, loaded_on=[1], lazy_on=[], lazy_tlb=False)
    # step 12: K's active_mm: lazy on, A (the mm it borrowed), lazily loaded on CPU 0.
    s.check(task="K", mm_users=3, mm_count=2, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    # step 13: shootdown: A as well, with the uncounted borrow (count 1).
    s.check(task="K", mm_users=3, mm_count=1, loaded_on=[0, 1], lazy_on=[0],
            lazy_tlb="shootdown")
    # step 14: lazy off: init_mm, loaded on CPU 0 only (CPU 1 has A); never lazy.
    s.check(task="K", loaded_on=[0], lazy_on=[], lazy_tlb=False)
    # step 15: init_mm is loaded nowhere with lazy switching (on, shootdown): CPU 0 kept A.
    s.check("init_mm", loaded_on=[], lazy_on=[], lazy_tlb=LAZY)
    # step 16: CPU 0 so far. Switches: step 4 (k->u), 7 (u->u), 8 (u->k) = 3.
    #   Lazy on and shootdown: one CR3 write (step 4, flush, in every PCID mode);
    #   lazy_entries 1 (step 8); user_bursts 2 (steps 4, 7).
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=3, switch_kernel_to_user=1,
               switch_user_to_user=1, switch_user_to_kernel=1, switch_kernel_to_kernel=0,
               cr3_writes=1, cr3_writes_flush=1, cr3_writes_noflush=0, lazy_entries=1,
               user_bursts=2)
    # step 17: lazy on: lazy_grabs 1 (step 8, A); lazy_drops 1 (step 4, init_mm).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=1, lazy_drops=1)
    # step 18: shootdown: mmgrab_lazy_tlb / mmdrop_lazy_tlb count nothing.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 19: lazy off: CR3 writes at step 4 and step 8 (init_mm).
    s.counters(cpu=0, lazy_tlb=False, context_switches=3, switch_kernel_to_user=1,
               switch_user_to_user=1, switch_user_to_kernel=1, switch_kernel_to_kernel=0,
               cr3_writes=2, lazy_entries=0, lazy_grabs=0, lazy_drops=0, user_bursts=2)
    # step 20: lazy off with PCIDs: step 4 flushes, step 8 (init_mm, ASID 0) does not.
    s.counters(cpu=0, lazy_tlb=False, pcid=True, cr3_writes_flush=1, cr3_writes_noflush=1)
    # step 21: lazy off, PCID off: both flush (choose_new_asid: ASID 0, need_flush).
    s.counters(cpu=0, lazy_tlb=False, pcid=False, cr3_writes_flush=2, cr3_writes_noflush=0)
    s.checkpoint()

    # step 23: CPU 0: K -> A, kernel -> user: back to a thread of the process.
    #   Lazy on and shootdown: switch_mm_irqs_off(A): loaded_mm == A and was lazy -> is_lazy
    #   false; ctxs[1].tlb_gen (PCID off: ctxs[0]) == A's tlb_gen (no munmap/mprotect
    #   happened) -> no CR3 write at all. rq->prev_mm = K's active_mm (A),
    #   K->active_mm = NULL; finish_task_switch(): mmdrop_lazy_tlb(A): lazy on: mm_count 1,
    #   lazy_drops 2 on CPU 0; shootdown: nothing to drop, mm_count stays 1.
    #   Lazy off: switch_mm_irqs_off(A): init_mm != A; ctxs[1] holds A's ctx_id at A's
    #   tlb_gen -> ASID 1, CR3 write without flush (CPU 0: cr3_writes 3, noflush 2);
    #   PCID off: ASID 0, a flushing write.
    #   All: A runs in ring 3 (CPU 0 user_bursts 3).
    s.run(0, "A")
    # step 24: back to one reference; A loaded (not lazily) on both CPUs in every mode.
    s.check("A", mm_users=3, mm_count=1, loaded_on=[0, 1], lazy_on=[])
    # step 25: CPU 0: 4 switches (4, 7, 8, 23), two of them kernel -> user (4, 23).
    #   Lazy on and shootdown: still 1 CR3 write (flushing in every PCID mode).
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_user=1, switch_user_to_kernel=1, cr3_writes=1,
               cr3_writes_flush=1, cr3_writes_noflush=0, lazy_entries=1, user_bursts=3)
    # step 26: lazy on: lazy_grabs 1 (A at 8); lazy_drops 2 (init_mm at 4, A at 23).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=1, lazy_drops=2)
    # step 27: shootdown: no lazy reference was taken or dropped.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 28: lazy off: 3 CR3 writes: steps 4, 8 (init_mm) and 23 (A).
    s.counters(cpu=0, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_user=1, switch_user_to_kernel=1, cr3_writes=3, lazy_entries=0,
               lazy_grabs=0, lazy_drops=0, user_bursts=3)
    # step 29: lazy off with PCIDs: step 4 flushes; 8 (init_mm, ASID 0) and 23 (A, ASID 1 up
    #   to date) do not.
    s.counters(cpu=0, lazy_tlb=False, pcid=True, cr3_writes_flush=1, cr3_writes_noflush=2)
    # step 30: lazy off, PCID off: all 3 flush.
    s.counters(cpu=0, lazy_tlb=False, pcid=False, cr3_writes_flush=3, cr3_writes_noflush=0)
    # step 31: CPU 1 did only step 5, alike in every mode: 1 switch (k->u), 1 CR3 write
    #   (flushing, with or without PCID: a first load), 1 burst; no lazy entry or grab.
    s.counters(cpu=1, context_switches=1, switch_kernel_to_user=1, cr3_writes=1,
               cr3_writes_flush=1, cr3_writes_noflush=0, lazy_entries=0, lazy_grabs=0,
               user_bursts=1)
    # step 32: lazy on also 1 lazy drop (init_mm, step 5) ...
    s.counters(cpu=1, lazy_tlb=True, lazy_drops=1)
    # step 33: ... which shootdown (no lazy references) and lazy off (no prev_mm) do not have.
    s.counters(cpu=1, lazy_tlb=["shootdown", "off"], lazy_drops=0)
    # step 34: totals = CPU 0 + CPU 1 (steps 25-27 and 31-33). No invlpg, IPIs or shootdowns.
    #   Lazy on and shootdown: 5 switches, 2 CR3 writes (both flushing, with or without
    #   PCID), 4 bursts.
    s.counters(lazy_tlb=LAZY, context_switches=5, switch_user_to_kernel=1,
               switch_kernel_to_kernel=0, switch_kernel_to_user=3, switch_user_to_user=1,
               cr3_writes=2, cr3_writes_flush=2, cr3_writes_noflush=0, invlpg=0,
               lazy_entries=1, ipis_sent=0, ipis_received=0, shootdowns=0, full_flushes=0,
               leave_mm=0, user_bursts=4)
    # step 35: lazy on: 1 lazy grab (A), 3 lazy drops (init_mm twice, A).
    s.counters(lazy_tlb=True, lazy_grabs=1, lazy_drops=3)
    # step 36: shootdown: none.
    s.counters(lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 37: lazy off: 4 CR3 writes (the first loads of A on both CPUs, init_mm, A again).
    s.counters(lazy_tlb=False, context_switches=5, switch_user_to_kernel=1,
               switch_kernel_to_kernel=0, switch_kernel_to_user=3, switch_user_to_user=1,
               cr3_writes=4, invlpg=0, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               ipis_sent=0, ipis_received=0, shootdowns=0, full_flushes=0, leave_mm=0,
               user_bursts=4)
    # step 38: lazy off with PCIDs: 2 flushing (first loads of A), 2 not (init_mm, A again).
    s.counters(lazy_tlb=False, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=2)
    # step 39: lazy off, PCID off: all 4 flush.
    s.counters(lazy_tlb=False, pcid=False, cr3_writes_flush=4, cr3_writes_noflush=0)
    return s


if __name__ == "__main__":
    main(build())
