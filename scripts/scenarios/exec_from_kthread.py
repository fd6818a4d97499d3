"""A kernel thread that borrowed a user mm execs and becomes a user task.

Documentation/mm/active_mm.rst: a kernel thread has mm == NULL and runs on a borrowed
active_mm. When it execs (as the kernel's user-mode helpers do: kernel_execve), exec_mmap()
gives it a new mm of its own: activate_mm() loads the new mm (a CR3 write with a new ASID and
a flush), and since the task had no mm of its own, the mm it was borrowing is released with
mmdrop_lazy_tlb() instead of mmput(). From then on it is a user task like any other: its exit
goes through exit_mm(), and its mm lingers (lazy TLB on) as the active_mm of CPU 0's idle task,
with its lazy reference, until a user task runs there. It does not stay loaded: exit_mmap()
flushes the whole mm with freed_tables before freeing the page tables, and CPU 0, lazy on it
after exit_mm(), leaves it for init_mm (leave_mm).

Process A runs on CPU 0, then the kernel thread K borrows A there (lazy TLB on: A stays
loaded, mm_count 2; off: init_mm is loaded). A moves on to CPU 1. K execs on CPU 0: A's
mm_count drops back to 1 (lazy on), K runs on "K.exec1", maps two pages and exits.

2 CPUs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402


def build():
    s = Scenario("exec_from_kthread", cpus=2)

    s.spawn("A", pages=4)  # step 0: mm A 1/1
    s.kthread("K")         # step 1

    # step 2: CPU 0: idle/0 -> A, kernel -> user: ASID 1 (next_asid 2), flushing CR3 write;
    #   lazy on: mmdrop_lazy_tlb(init_mm) in finish_task_switch (lazy_drops 1). user_bursts 1.
    s.run(0, "A")
    # step 3: CPU 0: A -> K, user -> kernel.
    #   Lazy on: enter_lazy_tlb (lazy_entries 1), K->active_mm = A, mmgrab_lazy_tlb(A):
    #   count 2 (lazy_grabs 1). No CR3 write.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0 slot still holds init_mm -> CR3 write
    #   without flush. K->active_mm = init_mm.
    s.run(0, "K")
    # step 4: lazy on: count 2 = users' reference + K's lazy one; CPU 0 lazy on A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0], lazy_on=[0], lazy_tlb=True)
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[0], lazy_on=[0], lazy_tlb=True)
    # step 6: lazy off: A loaded nowhere; K's active_mm is init_mm, loaded on CPU 0 (CPU 1 is
    #   still on init_mm too: it has run nothing yet).
    s.check("A", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=False)
    s.check(task="K", loaded_on=[0, 1], lazy_on=[], lazy_tlb=False)

    # step 8: CPU 1: idle/1 -> A (A is runnable: K replaced it on CPU 0). Kernel -> user:
    #   ASID 1 on CPU 1, flushing CR3 write; lazy on: lazy_drops 1 (init_mm). user_bursts 1.
    s.run(1, "A")
    # step 9: lazy on: CPU 0 still lazily on A (K), CPU 1 runs A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    s.check("A", mm_users=1, mm_count=1, loaded_on=[1], lazy_on=[], lazy_tlb=False)

    # step 11: K execs on CPU 0: new mm "K.exec1" (1/1); K->mm = K->active_mm = K.exec1.
    #   activate_mm -> switch_mm_irqs_off(K.exec1): loaded A (lazy on, was lazy: is_lazy
    #   cleared) or init_mm (off) != K.exec1; CPU 0's slots hold init_mm (0) and A (1) ->
    #   ASID 2 (next_asid 3), flushing CR3 write.
    #   K had no mm: lazy on: mmdrop_lazy_tlb(A) -> A count 1 (CPU 0 lazy_drops 2);
    #   lazy off: no drop. Then K runs in ring 3 (CPU 0 user_bursts 2).
    s.exec("K", pages=3)
    # step 12: A is back to its users' reference alone, loaded only where it runs.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[1], lazy_on=[])
    s.check("K.exec1", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[])
    # step 14: K's active_mm is its own mm now.
    s.check(task="K", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[])
    # step 15: CPU 0 so far: switches 2 (2 k->u, 3 u->k); exec is no context switch.
    #   Lazy on: CR3 writes at 2 and 11, both flushing; lazy_drops 2 (init_mm, A).
    s.counters(cpu=0, lazy_tlb=True, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=2, cr3_writes_flush=2,
               cr3_writes_noflush=0, lazy_entries=1, lazy_grabs=1, lazy_drops=2,
               user_bursts=2)
    #   Lazy off: CR3 writes at 2 (flush), 3 (init_mm, no flush), 11 (flush).
    s.counters(cpu=0, lazy_tlb=False, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=3, cr3_writes_flush=2,
               cr3_writes_noflush=1, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               user_bursts=2)

    # step 17: K, a user task now, maps two pages: no tlb_gen change, no flush; ring 3 runs
    #   again (CPU 0 user_bursts 3).
    s.mmap("K", pages=2)
    # step 18: K exits on CPU 0 through exit_mm, like any user task.
    #   Lazy on: mmgrab_lazy_tlb(K.exec1) -> count 2 (CPU 0 lazy_grabs 2); enter_lazy_tlb
    #   -> lazy (lazy_entries 2); mmput -> users 0: exit_mmap: flush_tlb_mm(K.exec1) with
    #   freed_tables (CPU 0 shootdowns 1). Its mm_cpumask is {0}, no other CPU -> local
    #   flush_tlb_func, as K.exec1 is CPU 0's loaded_mm: lazy -> leave_mm (CPU 0 leave_mm 1):
    #   switch_mm_irqs_off(init_mm): CPU 0 handed out ASIDs 1 and 2 only, so slot 0 still
    #   holds init_mm at its generation -> ASID 0, CR3 write without flush. Then mmdrop ->
    #   count 1. Kernel -> kernel to idle/0, which inherits active_mm = K.exec1
    #   (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0 (still init_mm's: no wrap), no flush;
    #   mmput -> users 0 -> exit_mmap: flush_tlb_mm (CPU 0 shootdowns 1), mask {0}, init_mm
    #   loaded -> nothing to flush; count 0: freed. Then kernel -> kernel to idle/0.
    s.exit("K")
    # step 19: lazy on: idle/0's lazy reference keeps K.exec1 alive, but CPU 0 left it for
    #   init_mm at step 18 (leave_mm): loaded nowhere.
    s.check("K.exec1", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    s.check("K.exec1", freed=True, loaded_on=[], lazy_tlb=False)

    # step 21: CPU 1: A -> idle/1, user -> kernel.
    #   Lazy on: enter_lazy_tlb (CPU 1 lazy_entries 1), mmgrab_lazy_tlb(A): count 2
    #   (CPU 1 lazy_grabs 1). Lazy off: init_mm loaded on CPU 1: ASID 0, no flush.
    s.idle(1)
    # step 22: CPU 0: idle/0 -> A, kernel -> user. Loaded is init_mm in both modes (lazy on
    #   since step 18's leave_mm), != A: a normal mm switch. CPU 0's ASID 1 still holds A at
    #   A's tlb_gen (A never had a munmap, mprotect, fork or exit_mmap flush) -> ASID 1, CR3
    #   write WITHOUT flush.
    #   Lazy on: rq->prev_mm = K.exec1; mmdrop_lazy_tlb -> count 0: K.exec1 is freed
    #   (CPU 0 lazy_drops 3). user_bursts: CPU 0 4.
    s.run(0, "A")
    # step 23
    s.check("K.exec1", freed=True, loaded_on=[])
    # step 24: lazy on: count 2 = users' reference + idle/1's lazy one (CPU 1 lazy on A).
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)

    # step 26: CPU 0: switches at 2 (k->u), 3 (u->k), 18 (k->k), 22 (k->u).
    #   Lazy on: CR3 writes 2 (flush), 11 (flush), 18 (leave_mm to init_mm, no flush),
    #   22 (no flush); lazy_entries/grabs at 3 and 18; lazy_drops at 2 (init_mm), 11 (A),
    #   22 (K.exec1); bursts at 2, 11, 17, 22. Shootdowns 1 (exit_mmap at 18), no IPI
    #   (K.exec1 was only ever on CPU 0).
    s.counters(cpu=0, lazy_tlb=True, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=4, cr3_writes_flush=2, cr3_writes_noflush=2, invlpg=0,
               lazy_entries=2, lazy_grabs=2, lazy_drops=3, shootdowns=1, ipis_sent=0,
               leave_mm=1, full_flushes=0, user_bursts=4)
    #   Lazy off: CR3 writes 2 (flush), 3 (no flush), 11 (flush), 18 (no flush),
    #   22 (no flush). Shootdowns 1 (step 18), which found init_mm loaded: no leave_mm.
    s.counters(cpu=0, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=5, cr3_writes_flush=2, cr3_writes_noflush=3, invlpg=0,
               lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=0,
               leave_mm=0, full_flushes=0, user_bursts=4)
    # step 28: CPU 1: switches at 8 (k->u) and 21 (u->k).
    #   Lazy on: one CR3 write (8, flush); lazy_entries/grabs at 21; lazy_drops at 8.
    s.counters(cpu=1, lazy_tlb=True, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=1, cr3_writes_flush=1,
               cr3_writes_noflush=0, lazy_entries=1, lazy_grabs=1, lazy_drops=1,
               user_bursts=1)
    #   Lazy off: plus step 21's init_mm load (no flush).
    s.counters(cpu=1, lazy_tlb=False, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=2, cr3_writes_flush=1,
               cr3_writes_noflush=1, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               user_bursts=1)
    # step 30: totals (steps 26 + 28). CPU 1 had no shootdown and got no IPI.
    s.counters(lazy_tlb=True, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=2, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=5, cr3_writes_flush=3, cr3_writes_noflush=2, lazy_entries=3,
               lazy_grabs=3, lazy_drops=4, shootdowns=1, ipis_sent=0, ipis_received=0,
               leave_mm=1, user_bursts=5)
    s.counters(lazy_tlb=False, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=2, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=7, cr3_writes_flush=3, cr3_writes_noflush=4, lazy_entries=0,
               lazy_grabs=0, lazy_drops=0, shootdowns=1, ipis_sent=0, ipis_received=0,
               leave_mm=0, user_bursts=5)
    return s


if __name__ == "__main__":
    main(build())
