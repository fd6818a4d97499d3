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

Lazy TLB shootdown (CONFIG_MMU_LAZY_TLB_SHOOTDOWN) switches and writes CR3 as lazy TLB on
does, but mmgrab_lazy_tlb() and mmdrop_lazy_tlb() take and drop no reference: A's mm_count
stays 1 while K (and later idle/1) borrows it, and lazy_grabs and lazy_drops stay 0. K.exec1
is freed at K's exit, by exit_mmap's mmdrop: __mmdrop -> cleanup_lazy_tlbs() runs
do_shoot_lazy_tlb on the CPUs of K.exec1's mm_cpumask, here CPU 0 alone (locally, no IPI),
which moves the exiting K's active_mm to init_mm (already loaded after leave_mm).

PCID off (--pcid=off): choose_new_asid() (arch/x86/mm/tlb.c) returns ASID 0 with need_flush
when the CPU has no PCID, so every CR3 write flushes, including the loads of init_mm and A's
return to CPU 0 through its still up-to-date ASID slot. The number of CR3 writes is the same;
only cr3_writes_flush and cr3_writes_noflush are split by PCID mode.

2 CPUs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402

LAZY = ["on", "shootdown"]  # the two modes with lazy TLB switching


def build():
    s = Scenario("exec_from_kthread", cpus=2)

    s.spawn("A", pages=4)  # step 0: mm A 1/1
    s.kthread("K")         # step 1

    # step 2: CPU 0: idle/0 -> A, kernel -> user: ASID 1 (next_asid 2), flushing CR3 write
    #   (PCID off: ASID 0, flushing); lazy on: mmdrop_lazy_tlb(init_mm) in finish_task_switch
    #   (lazy_drops 1); shootdown: nothing dropped. user_bursts 1.
    s.run(0, "A")
    # step 3: CPU 0: A -> K, user -> kernel.
    #   Lazy on: enter_lazy_tlb (lazy_entries 1), K->active_mm = A, mmgrab_lazy_tlb(A):
    #   count 2 (lazy_grabs 1). No CR3 write.
    #   Shootdown: the same, but mmgrab_lazy_tlb takes no reference: count stays 1.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0 slot still holds init_mm -> CR3 write
    #   without flush (PCID off: with flush). K->active_mm = init_mm.
    s.run(0, "K")
    # step 4: lazy on: count 2 = users' reference + K's lazy one; CPU 0 lazy on A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0], lazy_on=[0], lazy_tlb=True)
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[0], lazy_on=[0], lazy_tlb=True)
    # step 6: shootdown: K's borrow is uncounted: count 1; CPU 0 lazy on A.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[0], lazy_tlb="shootdown")
    s.check(task="K", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[0],
            lazy_tlb="shootdown")
    # step 8: lazy off: A loaded nowhere; K's active_mm is init_mm, loaded on CPU 0 (CPU 1 is
    #   still on init_mm too: it has run nothing yet).
    s.check("A", mm_users=1, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=False)
    s.check(task="K", loaded_on=[0, 1], lazy_on=[], lazy_tlb=False)

    # step 10: CPU 1: idle/1 -> A (A is runnable: K replaced it on CPU 0). Kernel -> user:
    #   ASID 1 on CPU 1, flushing CR3 write; lazy on: lazy_drops 1 (init_mm). user_bursts 1.
    s.run(1, "A")
    # step 11: lazy on: CPU 0 still lazily on A (K), CPU 1 runs A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[0], lazy_tlb=True)
    # step 12: shootdown: the same places, count 1.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[0], lazy_tlb="shootdown")
    s.check("A", mm_users=1, mm_count=1, loaded_on=[1], lazy_on=[], lazy_tlb=False)

    # step 14: K execs on CPU 0: new mm "K.exec1" (1/1); K->mm = K->active_mm = K.exec1.
    #   activate_mm -> switch_mm_irqs_off(K.exec1): loaded A (lazy on and shootdown, was
    #   lazy: is_lazy cleared) or init_mm (off) != K.exec1; CPU 0's slots hold init_mm (0)
    #   and A (1) -> ASID 2 (next_asid 3), flushing CR3 write (PCID off: ASID 0, flushing).
    #   K had no mm: lazy on: mmdrop_lazy_tlb(A) -> A count 1 (CPU 0 lazy_drops 2);
    #   shootdown: mmdrop_lazy_tlb drops nothing (count already 1); lazy off: no drop. Then
    #   K runs in ring 3 (CPU 0 user_bursts 2).
    s.exec("K", pages=3)
    # step 15: A is back to its users' reference alone, loaded only where it runs.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[1], lazy_on=[])
    s.check("K.exec1", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[])
    # step 17: K's active_mm is its own mm now.
    s.check(task="K", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[])
    # step 18: CPU 0 so far: switches 2 (2 k->u, 3 u->k); exec is no context switch.
    #   Lazy on and shootdown: CR3 writes at 2 and 14, both flushing (new ASIDs; PCID off
    #   too); lazy_entries 1 (step 3).
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=2, cr3_writes_flush=2,
               cr3_writes_noflush=0, lazy_entries=1, user_bursts=2)
    # step 19: lazy on: lazy_grabs 1 (A at 3); lazy_drops 2 (init_mm at 2, A at 14).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=1, lazy_drops=2)
    # step 20: shootdown: no lazy references taken or dropped.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 21: lazy off: CR3 writes at 2, 3 (init_mm) and 14.
    s.counters(cpu=0, lazy_tlb=False, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=3, lazy_entries=0, lazy_grabs=0,
               lazy_drops=0, user_bursts=2)
    # step 22: lazy off with PCIDs: 2 and 14 flush, 3 (init_mm, ASID 0) does not.
    s.counters(cpu=0, lazy_tlb=False, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=1)
    # step 23: lazy off, PCID off: all 3 flush (choose_new_asid: ASID 0, need_flush).
    s.counters(cpu=0, lazy_tlb=False, pcid=False, cr3_writes_flush=3, cr3_writes_noflush=0)

    # step 24: K, a user task now, maps two pages: no tlb_gen change, no flush; ring 3 runs
    #   again (CPU 0 user_bursts 3).
    s.mmap("K", pages=2)
    # step 25: K exits on CPU 0 through exit_mm, like any user task.
    #   Lazy on: mmgrab_lazy_tlb(K.exec1) -> count 2 (CPU 0 lazy_grabs 2); enter_lazy_tlb
    #   -> lazy (lazy_entries 2); mmput -> users 0: exit_mmap: flush_tlb_mm(K.exec1) with
    #   freed_tables (CPU 0 shootdowns 1). Its mm_cpumask is {0}, no other CPU -> local
    #   flush_tlb_func, as K.exec1 is CPU 0's loaded_mm: lazy -> leave_mm (CPU 0 leave_mm 1):
    #   switch_mm_irqs_off(init_mm): CPU 0 handed out ASIDs 1 and 2 only, so slot 0 still
    #   holds init_mm at its generation -> ASID 0, CR3 write without flush (PCID off: with
    #   flush). Then mmdrop -> count 1. Kernel -> kernel to idle/0, which inherits
    #   active_mm = K.exec1 (enter_lazy_tlb: init_mm loaded, nothing to set).
    #   Shootdown: no grab (count 1); lazy (lazy_entries 2); exit_mmap: the same flush and
    #   leave_mm; mmdrop -> count 0 -> __mmdrop -> cleanup_lazy_tlbs(K.exec1):
    #   on_each_cpu_mask({0}) runs do_shoot_lazy_tlb on CPU 0 only (locally: no IPI): the
    #   exiting K's active_mm is K.exec1 -> init_mm, already loaded: no CR3 write. Freed.
    #   Kernel -> kernel to idle/0, which inherits init_mm.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0 (still init_mm's: no wrap), no flush
    #   (PCID off: flush); mmput -> users 0 -> exit_mmap: flush_tlb_mm (CPU 0 shootdowns 1),
    #   mask {0}, init_mm loaded -> nothing to flush; count 0: freed. Then kernel -> kernel
    #   to idle/0.
    s.exit("K")
    # step 26: lazy on: idle/0's lazy reference keeps K.exec1 alive, but CPU 0 left it for
    #   init_mm at step 25 (leave_mm): loaded nowhere.
    s.check("K.exec1", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # step 27: shootdown and lazy off: freed at step 25.
    s.check("K.exec1", freed=True, loaded_on=[], lazy_tlb=["shootdown", "off"])

    # step 28: CPU 1: A -> idle/1, user -> kernel.
    #   Lazy on: enter_lazy_tlb (CPU 1 lazy_entries 1), mmgrab_lazy_tlb(A): count 2
    #   (CPU 1 lazy_grabs 1). Shootdown: enter_lazy_tlb (lazy_entries 1), no reference:
    #   count 1. Lazy off: init_mm loaded on CPU 1: ASID 0, no flush (PCID off: flush).
    s.idle(1)
    # step 29: CPU 0: idle/0 -> A, kernel -> user. Loaded is init_mm in every mode (lazy on
    #   and shootdown since step 25's leave_mm), != A: a normal mm switch. CPU 0's ASID 1
    #   still holds A at A's tlb_gen (A never had a munmap, mprotect, fork or exit_mmap
    #   flush) -> ASID 1, CR3 write WITHOUT flush. PCID off: ASID 0, flushing.
    #   Lazy on: rq->prev_mm = K.exec1; mmdrop_lazy_tlb -> count 0: K.exec1 is freed
    #   (CPU 0 lazy_drops 3). Shootdown: rq->prev_mm = init_mm, nothing dropped.
    #   user_bursts: CPU 0 4.
    s.run(0, "A")
    # step 30
    s.check("K.exec1", freed=True, loaded_on=[])
    # step 31: lazy on: count 2 = users' reference + idle/1's lazy one (CPU 1 lazy on A).
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    # step 32: shootdown: idle/1 borrows A uncounted: count 1; CPU 1 lazy on A.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[1], lazy_tlb="shootdown")
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)

    # step 34: CPU 0: switches at 2 (k->u), 3 (u->k), 25 (k->k), 29 (k->u).
    #   Lazy on and shootdown: CR3 writes 2, 14, 25 (leave_mm to init_mm), 29;
    #   lazy_entries at 3 and 25; bursts at 2, 14, 24, 29. Shootdowns 1 (exit_mmap at 25),
    #   no IPI (K.exec1 was only ever on CPU 0; so was cleanup_lazy_tlbs' shootdown).
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=4, invlpg=0, lazy_entries=2, shootdowns=1, ipis_sent=0,
               leave_mm=1, full_flushes=0, user_bursts=4)
    # step 35: lazy on: lazy_grabs at 3 and 25; lazy_drops at 2 (init_mm), 14 (A),
    #   29 (K.exec1).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=2, lazy_drops=3)
    # step 36: shootdown: none.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 37: lazy on and shootdown with PCIDs: 2 and 14 flush (new ASIDs); 25 (init_mm,
    #   ASID 0) and 29 (A, ASID 1 up to date) do not.
    s.counters(cpu=0, lazy_tlb=LAZY, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=2)
    # step 38: PCID off: all 4 flush.
    s.counters(cpu=0, lazy_tlb=LAZY, pcid=False, cr3_writes_flush=4, cr3_writes_noflush=0)
    # step 39: lazy off: CR3 writes 2, 3 (init_mm), 14, 25 (init_mm), 29. Shootdowns 1
    #   (step 25), which found init_mm loaded: no leave_mm.
    s.counters(cpu=0, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_user_to_kernel=1, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=5, invlpg=0, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=1, ipis_sent=0, leave_mm=0, full_flushes=0, user_bursts=4)
    # step 40: lazy off with PCIDs: 2 and 14 flush; 3, 25 (init_mm) and 29 (A) do not.
    s.counters(cpu=0, lazy_tlb=False, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=3)
    # step 41: lazy off, PCID off: all 5 flush.
    s.counters(cpu=0, lazy_tlb=False, pcid=False, cr3_writes_flush=5, cr3_writes_noflush=0)
    # step 42: CPU 1: switches at 10 (k->u) and 28 (u->k).
    #   Lazy on and shootdown: one CR3 write (10, a first load: flushing with or without
    #   PCID); lazy_entries at 28.
    s.counters(cpu=1, lazy_tlb=LAZY, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=1, cr3_writes_flush=1,
               cr3_writes_noflush=0, lazy_entries=1, user_bursts=1)
    # step 43: lazy on: lazy_grabs at 28 (A); lazy_drops at 10 (init_mm).
    s.counters(cpu=1, lazy_tlb=True, lazy_grabs=1, lazy_drops=1)
    # step 44: shootdown: none.
    s.counters(cpu=1, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 45: lazy off: plus step 28's init_mm load.
    s.counters(cpu=1, lazy_tlb=False, context_switches=2, switch_kernel_to_user=1,
               switch_user_to_kernel=1, cr3_writes=2, lazy_entries=0, lazy_grabs=0,
               lazy_drops=0, user_bursts=1)
    # step 46: lazy off with PCIDs: 10 flushes, 28 (init_mm, ASID 0) does not.
    s.counters(cpu=1, lazy_tlb=False, pcid=True, cr3_writes_flush=1, cr3_writes_noflush=1)
    # step 47: lazy off, PCID off: both flush.
    s.counters(cpu=1, lazy_tlb=False, pcid=False, cr3_writes_flush=2, cr3_writes_noflush=0)
    # step 48: totals (steps 34-41 + 42-47). CPU 1 had no shootdown and got no IPI.
    s.counters(lazy_tlb=LAZY, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=2, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=5, lazy_entries=3, shootdowns=1, ipis_sent=0, ipis_received=0,
               leave_mm=1, user_bursts=5)
    # step 49: lazy on: 3 lazy grabs, 4 lazy drops.
    s.counters(lazy_tlb=True, lazy_grabs=3, lazy_drops=4)
    # step 50: shootdown: none.
    s.counters(lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0)
    # step 51: lazy on and shootdown with PCIDs: 3 flushing (2, 14, 10), 2 not (25, 29).
    s.counters(lazy_tlb=LAZY, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=2)
    # step 52: PCID off: all 5 flush.
    s.counters(lazy_tlb=LAZY, pcid=False, cr3_writes_flush=5, cr3_writes_noflush=0)
    # step 53: lazy off.
    s.counters(lazy_tlb=False, context_switches=6, switch_kernel_to_user=3,
               switch_user_to_kernel=2, switch_kernel_to_kernel=1, switch_user_to_user=0,
               cr3_writes=7, lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=1,
               ipis_sent=0, ipis_received=0, leave_mm=0, user_bursts=5)
    # step 54: lazy off with PCIDs: 3 flushing (2, 14, 10), 4 not (3, 25, 28: init_mm;
    #   29: A).
    s.counters(lazy_tlb=False, pcid=True, cr3_writes_flush=3, cr3_writes_noflush=4)
    # step 55: lazy off, PCID off: all 7 flush.
    s.counters(lazy_tlb=False, pcid=False, cr3_writes_flush=7, cr3_writes_noflush=0)
    return s


if __name__ == "__main__":
    main(build())
