"""The last thread of a process exits while a kernel thread still borrows its mm.

Documentation/mm/active_mm.rst: mm_users counts the users of the address space (threads),
mm_count the references to the mm_struct itself. A kernel thread running on a borrowed mm
(active_mm) holds an mm_count reference (mmgrab_lazy_tlb), not an mm_users one. So when the
last thread exits, mmput() drops mm_users to 0 and exit_mmap() tears the user address space
down, but the mm_struct and its page-table root live on until the last lazy reference is
dropped: the mm outlives its users. Its page tables do not stay in CR3, though: exit_mmap()
flushes the whole mm with freed_tables before freeing them (flush_tlb_mm), and every CPU that
is lazy on the mm leaves it for init_mm (leave_mm) - the exiting CPU itself and, by IPI, the
borrowing one. The borrower keeps the mm as its active_mm, and its reference.

Process A has two threads. A1 exits on CPU 1 (idle/1 inherits A lazily), CPU 1 then runs the
kernel thread K, which takes the borrowed A over (kernel -> kernel: the reference moves with
active_mm). Then A, the last thread, exits on CPU 0:

- lazy TLB on: mm_users 0, mm_count 2 (K on CPU 1 and idle/0 on CPU 0), not freed, but
  loaded nowhere: exit_mmap's flush moved both CPUs to init_mm. CPU 0 then runs B (its lazy
  reference goes: mm_count 1, still held by K) and finally CPU 1 switches from K to C, a user
  task of another process: finish_task_switch() drops the last reference (mmdrop_lazy_tlb)
  and A is freed.
- lazy TLB off: exit_mm() loads init_mm before mmput(), nothing borrows A, so A is freed the
  moment its last thread exits. exit_mmap's flush still IPIs CPU 1 (left in A's mm_cpumask),
  which has init_mm loaded and just clears its bit.

2 CPUs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402


def build():
    s = Scenario("last_thread_exit_while_borrowed", cpus=2)

    # steps 0-4: no switch, no CR3 write, no counter.
    s.spawn("A", pages=6)      # mm A: mm_users 1, mm_count 1
    s.clone_vm("A", "A1")      # mmget: A mm_users 2
    s.spawn("B", pages=2)      # mm B: 1/1
    # dup_mm: mm C 1/1 (B runs nowhere: executed on CPU 0). Then flush_tlb_mm(B) (fork
    #   rule): CPU 0 shootdowns 1, B's tlb_gen + 1; B's mm_cpumask is empty and B is not
    #   loaded on CPU 0 -> no IPI, no flush.
    s.fork("B", "C")
    s.kthread("K")

    # step 5: CPU 0: idle/0 -> A, kernel -> user. switch_mm_irqs_off(A): init_mm != A, no slot
    #   has A -> ASID 1 (next_asid 2), flushing CR3 write. Lazy on: finish_task_switch()
    #   drops idle/0's lazy reference on init_mm (lazy_drops 1). user_bursts 1.
    s.run(0, "A")
    # step 6: CPU 1: idle/1 -> A1, the same on CPU 1 (ASID 1, flush; lazy on: lazy_drops 1).
    s.run(1, "A1")
    # step 7: two threads, one mm_count reference for both; A loaded on both CPUs.
    s.check("A", mm_users=2, mm_count=1, loaded_on=[0, 1], lazy_on=[])

    # step 8: A1 exits on CPU 1.
    #   Lazy on: exit_mm: mmgrab_lazy_tlb(A) -> count 2 (lazy_grabs 1); A1->mm = NULL;
    #   enter_lazy_tlb: CPU 1 has A loaded, not lazy -> lazy (lazy_entries 1); mmput: users 1.
    #   Then A1 -> idle/1 is kernel -> kernel (A1->mm is NULL now): idle/1 inherits
    #   active_mm = A with that lazy reference; no CR3 write.
    #   Lazy off: A1->mm = NULL; switch_mm_irqs_off(init_mm): ctxs[0] holds init_mm -> ASID 0,
    #   CR3 write without flush; mmput: users 1; then the kernel -> kernel switch to idle/1.
    s.exit("A1")
    # step 9: lazy on: count 2 = 1 (users > 0) + idle/1's lazy reference; CPU 1 lazy on A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    #   lazy off: count 1; CPU 1 loaded init_mm.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)

    # step 11: CPU 1: idle/1 -> K, kernel -> kernel. Lazy on: enter_lazy_tlb finds CPU 1
    #   already lazy (no lazy_entries); K->active_mm = A, idle/1->active_mm = NULL: the
    #   reference moves, mm_count unchanged. Lazy off: init_mm already loaded: nothing.
    s.run(1, "K")
    # step 12: K's active_mm is A (lazy on) ...
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    #   ... or init_mm (lazy off), loaded on CPU 1 only.
    s.check(task="K", loaded_on=[1], lazy_on=[], lazy_tlb=False)

    # step 14: A, the last thread, exits on CPU 0.
    #   Lazy on: mmgrab_lazy_tlb(A) -> count 3 (CPU 0 lazy_grabs 1); A->mm = NULL;
    #   enter_lazy_tlb -> CPU 0 lazy (lazy_entries 1); mmput: users 0 -> exit_mmap:
    #   flush_tlb_mm(A) with freed_tables before the pages go (CPU 0 shootdowns 2, A's
    #   tlb_gen + 1). A's mm_cpumask is {0, 1}:
    #   - CPU 0 (in the mask; freed_tables -> flushes itself): A loaded, lazy -> leave_mm
    #     (CPU 0 leave_mm 1): switch_mm_irqs_off(init_mm); CPU 0's slot 0 still holds
    #     init_mm at its generation (only ASID 1 was ever handed out) -> ASID 0, CR3 write
    #     without flush; is_lazy cleared.
    #   - CPU 1: freed_tables -> IPI (CPU 0 ipis_sent 1, CPU 1 ipis_received 1); A loaded,
    #     lazy (K borrows it) -> leave_mm (CPU 1 leave_mm 1): init_mm, ASID 0 (CPU 1 only
    #     used ASID 1 too), CR3 write without flush. K's active_mm stays A.
    #   Then the user pages and lower page tables are freed, and mmdrop -> count 2.
    #   Kernel -> kernel switch to idle/0, which inherits active_mm = A; enter_lazy_tlb
    #   finds init_mm loaded and sets nothing.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0, no flush; mmput: users 0 ->
    #   exit_mmap: flush_tlb_mm(A) (CPU 0 shootdowns 2). The mask is still {0, 1} (bits are
    #   not cleared on switching away): CPU 1 gets the freed_tables IPI (CPU 0 ipis_sent 1,
    #   CPU 1 ipis_received 1); CPU 1 and CPU 0 itself have init_mm loaded, not A -> each
    #   just clears its mask bit (no leave_mm, no CR3 write). mmdrop -> count 0: A is
    #   freed. Kernel -> kernel switch to idle/0.
    s.exit("A")
    # step 15: lazy on: the mm outlives its users. count 2 = 0 (no users) + K's lazy reference
    #   (CPU 1) + idle/0's (CPU 0); but neither CPU has A loaded: both left it for init_mm
    #   at step 14 (leave_mm by exit_mmap's freed-tables flush).
    s.check("A", mm_users=0, mm_count=2, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # step 16: lazy off: freed at once, loaded nowhere.
    s.check("A", freed=True, loaded_on=[], lazy_tlb=False)
    s.checkpoint()

    # step 18: CPU 0: idle/0 -> B, kernel -> user.
    #   switch_mm_irqs_off(B): loaded init_mm (both modes: lazy on since step 14's
    #   leave_mm) != B; CPU 0's slots hold init_mm (0) and A (1), none holds B -> ASID
    #   next_asid = 2, flushing CR3 write.
    #   Lazy on: rq->prev_mm = A; mmdrop_lazy_tlb(A) -> count 1 (CPU 0 lazy_drops 2).
    s.run(0, "B")
    # step 19: lazy on: only K's lazy reference is left: not freed, but loaded nowhere
    #   (CPU 1 has init_mm loaded since step 14).
    s.check("A", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # step 20: which is K's active_mm.
    s.check(task="K", mm_users=0, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=True)
    # step 21: B runs on CPU 0.
    s.check("B", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[])

    # step 22: CPU 1: K -> C, kernel -> user: the borrowing CPU runs another process.
    #   switch_mm_irqs_off(C): loaded init_mm (both modes: lazy on since step 14's
    #   leave_mm), so a normal mm switch; CPU 1's slots hold init_mm (0) and A (1) -> ASID 2,
    #   flushing CR3 write. Lazy on: rq->prev_mm = A (K's active_mm), K->active_mm = NULL;
    #   finish_task_switch():
    #   mmdrop_lazy_tlb(A) -> count 0: A is freed now (CPU 1 lazy_drops 2).
    s.run(1, "C")
    # step 23: freed in both modes (lazy off since step 14), loaded nowhere.
    s.check("A", freed=True, loaded_on=[])
    s.check("C", mm_users=1, mm_count=1, loaded_on=[1], lazy_on=[])

    # step 25: CPU 0: switches at 5 (k->u), 14 (k->k, the exit), 18 (k->u).
    #   Lazy on: CR3 writes at 5 and 18 (flushing) and 14 (leave_mm to init_mm, no flush);
    #   lazy_entries/lazy_grabs 1 (step 14); lazy_drops 2 (init_mm at 5, A at 18);
    #   user_bursts 2 (5, 18).
    #   Both modes: shootdowns 2 (fork's flush_tlb_mm(B) at 3, exit_mmap's of A at 14);
    #   ipis_sent 1 (to CPU 1 at 14); none received; no INVLPG or full flush.
    s.counters(cpu=0, lazy_tlb=True, context_switches=3, switch_kernel_to_user=2,
               switch_kernel_to_kernel=1, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, cr3_writes_flush=2, cr3_writes_noflush=1, lazy_entries=1,
               lazy_grabs=1, lazy_drops=2, shootdowns=2, ipis_sent=1, ipis_received=0,
               leave_mm=1, invlpg=0, full_flushes=0, user_bursts=2)
    #   Lazy off: the same 3 CR3 writes, the one at step 14 being exit_mm's init_mm load
    #   (ASID 0, no flush); exit_mmap found init_mm loaded: no leave_mm.
    s.counters(cpu=0, lazy_tlb=False, context_switches=3, switch_kernel_to_user=2,
               switch_kernel_to_kernel=1, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, cr3_writes_flush=2, cr3_writes_noflush=1, lazy_entries=0,
               lazy_grabs=0, lazy_drops=0, shootdowns=2, ipis_sent=1, ipis_received=0,
               leave_mm=0, invlpg=0, full_flushes=0, user_bursts=2)
    # step 27: CPU 1: switches at 6 (k->u), 8 (k->k, the exit), 11 (k->k), 22 (k->u).
    #   Lazy on: CR3 writes at 6 and 22 (flush) and 14 (leave_mm on the IPI, no flush);
    #   lazy_entries/lazy_grabs 1 (step 8); lazy_drops 2 (init_mm at 6, A at 22);
    #   user_bursts 2 (6, 22).
    #   Both modes: ipis_received 1 (step 14), no shootdown of its own.
    s.counters(cpu=1, lazy_tlb=True, context_switches=4, switch_kernel_to_user=2,
               switch_kernel_to_kernel=2, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, cr3_writes_flush=2, cr3_writes_noflush=1, lazy_entries=1,
               lazy_grabs=1, lazy_drops=2, shootdowns=0, ipis_sent=0, ipis_received=1,
               leave_mm=1, user_bursts=2)
    #   Lazy off: CR3 writes at 6, 22 (flush) and step 8's init_mm load (no flush); the IPI
    #   at 14 found init_mm loaded: no leave_mm.
    s.counters(cpu=1, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_kernel_to_kernel=2, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, cr3_writes_flush=2, cr3_writes_noflush=1, lazy_entries=0,
               lazy_grabs=0, lazy_drops=0, shootdowns=0, ipis_sent=0, ipis_received=1,
               leave_mm=0, user_bursts=2)
    # step 29: totals (steps 25 + 27). Lazy on and off now write CR3 alike: the two
    #   leave_mm loads (lazy on, step 14) stand where lazy off loads init_mm at 8 and 14.
    s.counters(lazy_tlb=True, context_switches=7, switch_kernel_to_user=4,
               switch_kernel_to_kernel=3, cr3_writes=6, cr3_writes_flush=4,
               cr3_writes_noflush=2, invlpg=0, lazy_entries=2, lazy_grabs=2, lazy_drops=4,
               shootdowns=2, ipis_sent=1, ipis_received=1, leave_mm=2, full_flushes=0,
               user_bursts=4)
    s.counters(lazy_tlb=False, context_switches=7, switch_kernel_to_user=4,
               switch_kernel_to_kernel=3, cr3_writes=6, cr3_writes_flush=4,
               cr3_writes_noflush=2, invlpg=0, lazy_entries=0, lazy_grabs=0, lazy_drops=0,
               shootdowns=2, ipis_sent=1, ipis_received=1, leave_mm=0, full_flushes=0,
               user_bursts=4)
    return s


if __name__ == "__main__":
    main(build())
