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
- lazy TLB shootdown (CONFIG_MMU_LAZY_TLB_SHOOTDOWN): the same lazy switching, but the lazy
  users (idle/1, then K; the exiting A on CPU 0) hold no reference: mm_count counts only the
  users (1 while A has any). So exit_mmap's mmdrop is the last one and A is freed at once, in
  __mmdrop -> cleanup_lazy_tlbs() (kernel/fork.c): on_each_cpu_mask(mm_cpumask(A),
  do_shoot_lazy_tlb) runs on CPU 0 and IPIs CPU 1 (both still in the mask: leave_mm does not
  clear the bit), and every CPU whose current task still has A as active_mm moves it to
  init_mm - already loaded there, so no CR3 write. K then runs on init_mm. lazy_grabs and
  lazy_drops stay 0, and there is one more IPI than with lazy TLB on.
- lazy TLB off: exit_mm() loads init_mm before mmput(), nothing borrows A, so A is freed the
  moment its last thread exits. exit_mmap's flush still IPIs CPU 1 (left in A's mm_cpumask),
  which has init_mm loaded and just clears its bit.

PCID off (--pcid=off): choose_new_asid() (arch/x86/mm/tlb.c) returns ASID 0 with need_flush
when the CPU has no PCID, so every CR3 write flushes: the loads of init_mm (leave_mm with lazy
TLB on and shootdown, exit_mm's with lazy TLB off) flush too. The number of CR3 writes is the
same; only cr3_writes_flush and cr3_writes_noflush are split by PCID mode.

2 CPUs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm_scenario import Scenario, main  # noqa: E402

LAZY = ["on", "shootdown"]  # the two modes with lazy TLB switching


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
    #   has A -> ASID 1 (next_asid 2), flushing CR3 write (PCID off: ASID 0, flushing too).
    #   Lazy on: finish_task_switch() drops idle/0's lazy reference on init_mm
    #   (lazy_drops 1); shootdown: mmdrop_lazy_tlb drops nothing. user_bursts 1.
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
    #   Shootdown: the same, but mmgrab_lazy_tlb takes nothing: count stays 1, and idle/1
    #   borrows A uncounted.
    #   Lazy off: A1->mm = NULL; switch_mm_irqs_off(init_mm): ctxs[0] holds init_mm -> ASID 0,
    #   CR3 write without flush (PCID off: with flush); mmput: users 1; then the kernel ->
    #   kernel switch to idle/1.
    s.exit("A1")
    # step 9: lazy on: count 2 = 1 (users > 0) + idle/1's lazy reference; CPU 1 lazy on A.
    s.check("A", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    # step 10: shootdown: count 1 (users > 0 only); CPU 1 lazy on A as with lazy on.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[1], lazy_tlb="shootdown")
    # step 11: lazy off: count 1; CPU 1 loaded init_mm.
    s.check("A", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[], lazy_tlb=False)

    # step 12: CPU 1: idle/1 -> K, kernel -> kernel. Lazy on and shootdown: enter_lazy_tlb
    #   finds CPU 1 already lazy (no lazy_entries); K->active_mm = A, idle/1->active_mm =
    #   NULL: the reference (lazy on) moves, mm_count unchanged. Lazy off: init_mm already
    #   loaded: nothing.
    s.run(1, "K")
    # step 13: K's active_mm is A (lazy on) ...
    s.check(task="K", mm_users=1, mm_count=2, loaded_on=[0, 1], lazy_on=[1], lazy_tlb=True)
    # step 14: ... A too with shootdown, uncounted (count 1) ...
    s.check(task="K", mm_users=1, mm_count=1, loaded_on=[0, 1], lazy_on=[1],
            lazy_tlb="shootdown")
    # step 15: ... or init_mm (lazy off), loaded on CPU 1 only.
    s.check(task="K", loaded_on=[1], lazy_on=[], lazy_tlb=False)

    # step 16: A, the last thread, exits on CPU 0.
    #   Lazy on: mmgrab_lazy_tlb(A) -> count 3 (CPU 0 lazy_grabs 1); A->mm = NULL;
    #   enter_lazy_tlb -> CPU 0 lazy (lazy_entries 1); mmput: users 0 -> exit_mmap:
    #   flush_tlb_mm(A) with freed_tables before the pages go (CPU 0 shootdowns 2, A's
    #   tlb_gen + 1). A's mm_cpumask is {0, 1}:
    #   - CPU 0 (in the mask; freed_tables -> flushes itself): A loaded, lazy -> leave_mm
    #     (CPU 0 leave_mm 1): switch_mm_irqs_off(init_mm); CPU 0's slot 0 still holds
    #     init_mm at its generation (only ASID 1 was ever handed out) -> ASID 0, CR3 write
    #     without flush (PCID off: with flush); is_lazy cleared.
    #   - CPU 1: freed_tables -> IPI (CPU 0 ipis_sent 1, CPU 1 ipis_received 1); A loaded,
    #     lazy (K borrows it) -> leave_mm (CPU 1 leave_mm 1): init_mm, ASID 0 (CPU 1 only
    #     used ASID 1 too), CR3 write without flush (PCID off: with flush). K's active_mm
    #     stays A.
    #   Then the user pages and lower page tables are freed, and mmdrop -> count 2.
    #   Kernel -> kernel switch to idle/0, which inherits active_mm = A; enter_lazy_tlb
    #   finds init_mm loaded and sets nothing.
    #   Shootdown: no grab (count 1); CPU 0 lazy (lazy_entries 1); mmput -> exit_mmap: the
    #   same flush, IPI and two leave_mm. Then mmdrop -> count 0 -> __mmdrop(A) ->
    #   cleanup_lazy_tlbs(A): on_each_cpu_mask(mm_cpumask(A) = {0, 1}: the leave_mm paths
    #   keep their bits), do_shoot_lazy_tlb:
    #   - CPU 0, locally: current (the exiting A) has active_mm A -> active_mm = init_mm,
    #     switch_mm(init_mm): init_mm already loaded, not lazy -> nothing.
    #   - CPU 1 by IPI (CPU 0 ipis_sent 2, CPU 1 ipis_received 2): current K has active_mm A
    #     -> K->active_mm = init_mm; init_mm already loaded -> no CR3 write, no leave_mm.
    #   A is freed. Kernel -> kernel switch to idle/0, which inherits init_mm.
    #   Lazy off: switch_mm_irqs_off(init_mm): ASID 0, no flush (PCID off: flush); mmput:
    #   users 0 -> exit_mmap: flush_tlb_mm(A) (CPU 0 shootdowns 2). The mask is still
    #   {0, 1} (bits are not cleared on switching away): CPU 1 gets the freed_tables IPI
    #   (CPU 0 ipis_sent 1, CPU 1 ipis_received 1); CPU 1 and CPU 0 itself have init_mm
    #   loaded, not A -> each just clears its mask bit (no leave_mm, no CR3 write). mmdrop
    #   -> count 0: A is freed (cleanup_lazy_tlbs does nothing without shootdown). Kernel ->
    #   kernel switch to idle/0.
    s.exit("A")
    # step 17: lazy on: the mm outlives its users. count 2 = 0 (no users) + K's lazy reference
    #   (CPU 1) + idle/0's (CPU 0); but neither CPU has A loaded: both left it for init_mm
    #   at step 16 (leave_mm by exit_mmap's freed-tables flush).
    s.check("A", mm_users=0, mm_count=2, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # step 18: shootdown and lazy off: freed at once, loaded nowhere.
    s.check("A", freed=True, loaded_on=[], lazy_tlb=["shootdown", "off"])
    s.checkpoint()

    # step 20: CPU 0: idle/0 -> B, kernel -> user.
    #   switch_mm_irqs_off(B): loaded init_mm (every mode: lazy on and shootdown since step
    #   16's leave_mm) != B; CPU 0's slots hold init_mm (0) and A (1), none holds B -> ASID
    #   next_asid = 2, flushing CR3 write (PCID off: ASID 0, flushing).
    #   Lazy on: rq->prev_mm = A; mmdrop_lazy_tlb(A) -> count 1 (CPU 0 lazy_drops 2).
    #   Shootdown: rq->prev_mm = init_mm (idle/0's active_mm); nothing dropped.
    s.run(0, "B")
    # step 21: lazy on: only K's lazy reference is left: not freed, but loaded nowhere
    #   (CPU 1 has init_mm loaded since step 16).
    s.check("A", mm_users=0, mm_count=1, freed=False, loaded_on=[], lazy_on=[],
            lazy_tlb=True)
    # step 22: which is K's active_mm.
    s.check(task="K", mm_users=0, mm_count=1, loaded_on=[], lazy_on=[], lazy_tlb=True)
    # step 23: shootdown: do_shoot_lazy_tlb moved K to init_mm at step 16; lazy off: K has run
    #   on init_mm all along. Loaded on CPU 1 (CPU 0 runs B), not lazily.
    s.check(task="K", loaded_on=[1], lazy_on=[], lazy_tlb=["shootdown", "off"])
    # step 24: B runs on CPU 0.
    s.check("B", mm_users=1, mm_count=1, loaded_on=[0], lazy_on=[])

    # step 25: CPU 1: K -> C, kernel -> user: the borrowing CPU runs another process.
    #   switch_mm_irqs_off(C): loaded init_mm (every mode: lazy on and shootdown since step
    #   16's leave_mm), so a normal mm switch; CPU 1's slots hold init_mm (0) and A (1) ->
    #   ASID 2, flushing CR3 write (PCID off: ASID 0, flushing). Lazy on: rq->prev_mm = A
    #   (K's active_mm), K->active_mm = NULL; finish_task_switch():
    #   mmdrop_lazy_tlb(A) -> count 0: A is freed now (CPU 1 lazy_drops 2).
    #   Shootdown: rq->prev_mm = init_mm; nothing dropped.
    s.run(1, "C")
    # step 26: freed in every mode (shootdown and lazy off since step 16), loaded nowhere.
    s.check("A", freed=True, loaded_on=[])
    s.check("C", mm_users=1, mm_count=1, loaded_on=[1], lazy_on=[])

    # step 28: CPU 0: switches at 5 (k->u), 16 (k->k, the exit), 20 (k->u).
    #   Lazy on and shootdown: CR3 writes at 5 and 20 (new ASIDs) and 16 (leave_mm to
    #   init_mm); lazy_entries 1 (step 16); user_bursts 2 (5, 20); shootdowns 2 (fork's
    #   flush_tlb_mm(B) at 3, exit_mmap's of A at 16); none received; no INVLPG or full flush.
    s.counters(cpu=0, lazy_tlb=LAZY, context_switches=3, switch_kernel_to_user=2,
               switch_kernel_to_kernel=1, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, lazy_entries=1, shootdowns=2, ipis_received=0, leave_mm=1,
               invlpg=0, full_flushes=0, user_bursts=2)
    # step 29: lazy on: lazy_grabs 1 (step 16); lazy_drops 2 (init_mm at 5, A at 20);
    #   ipis_sent 1 (exit_mmap's flush IPI to CPU 1 at 16).
    s.counters(cpu=0, lazy_tlb=True, lazy_grabs=1, lazy_drops=2, ipis_sent=1)
    # step 30: shootdown: no lazy references; ipis_sent 2 at step 16: exit_mmap's flush IPI
    #   and cleanup_lazy_tlbs' do_shoot_lazy_tlb IPI, both to CPU 1.
    s.counters(cpu=0, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_sent=2)
    # step 31: lazy off: the same 3 CR3 writes, the one at step 16 being exit_mm's init_mm
    #   load; exit_mmap found init_mm loaded: no leave_mm. Shootdowns 2, ipis_sent 1 (16).
    s.counters(cpu=0, lazy_tlb=False, context_switches=3, switch_kernel_to_user=2,
               switch_kernel_to_kernel=1, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=2,
               ipis_sent=1, ipis_received=0, leave_mm=0, invlpg=0, full_flushes=0,
               user_bursts=2)
    # step 32: with PCIDs, in every lazy mode: 5 and 20 flush (new ASIDs), the init_mm load
    #   at 16 does not (ASID 0 still holds init_mm at its generation).
    s.counters(cpu=0, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=1)
    # step 33: PCID off: choose_new_asid gives ASID 0 with need_flush: all 3 flush.
    s.counters(cpu=0, pcid=False, cr3_writes_flush=3, cr3_writes_noflush=0)
    # step 34: CPU 1: switches at 6 (k->u), 8 (k->k, the exit), 12 (k->k), 25 (k->u).
    #   Lazy on and shootdown: CR3 writes at 6 and 25 (new ASIDs) and 16 (leave_mm on the
    #   flush IPI); lazy_entries 1 (step 8); user_bursts 2 (6, 25); no shootdown of its own.
    s.counters(cpu=1, lazy_tlb=LAZY, context_switches=4, switch_kernel_to_user=2,
               switch_kernel_to_kernel=2, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, lazy_entries=1, shootdowns=0, ipis_sent=0, leave_mm=1,
               user_bursts=2)
    # step 35: lazy on: lazy_grabs 1 (step 8); lazy_drops 2 (init_mm at 6, A at 25);
    #   ipis_received 1 (the flush at 16).
    s.counters(cpu=1, lazy_tlb=True, lazy_grabs=1, lazy_drops=2, ipis_received=1)
    # step 36: shootdown: no lazy references; ipis_received 2 (the flush and the
    #   do_shoot_lazy_tlb IPI, both at 16; the second found init_mm loaded: no leave_mm).
    s.counters(cpu=1, lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_received=2)
    # step 37: lazy off: CR3 writes at 6, 25 and step 8's init_mm load; the IPI at 16 found
    #   init_mm loaded: no leave_mm.
    s.counters(cpu=1, lazy_tlb=False, context_switches=4, switch_kernel_to_user=2,
               switch_kernel_to_kernel=2, switch_user_to_kernel=0, switch_user_to_user=0,
               cr3_writes=3, lazy_entries=0, lazy_grabs=0, lazy_drops=0, shootdowns=0,
               ipis_sent=0, ipis_received=1, leave_mm=0, user_bursts=2)
    # step 38: with PCIDs, in every lazy mode: 6 and 25 flush; the init_mm load (16 by
    #   leave_mm, or 8 with lazy TLB off) does not.
    s.counters(cpu=1, pcid=True, cr3_writes_flush=2, cr3_writes_noflush=1)
    # step 39: PCID off: all 3 flush.
    s.counters(cpu=1, pcid=False, cr3_writes_flush=3, cr3_writes_noflush=0)
    # step 40: totals (steps 28-33 + 34-39). Every mode writes CR3 6 times: the two leave_mm
    #   loads (lazy on and shootdown, step 16) stand where lazy off loads init_mm at 8 and 16.
    s.counters(lazy_tlb=LAZY, context_switches=7, switch_kernel_to_user=4,
               switch_kernel_to_kernel=3, cr3_writes=6, invlpg=0, lazy_entries=2,
               shootdowns=2, leave_mm=2, full_flushes=0, user_bursts=4)
    # step 41: lazy on: 2 grabs, 4 drops; one IPI (step 16), received once.
    s.counters(lazy_tlb=True, lazy_grabs=2, lazy_drops=4, ipis_sent=1, ipis_received=1)
    # step 42: shootdown: no lazy references; two IPIs (step 16), each received once.
    s.counters(lazy_tlb="shootdown", lazy_grabs=0, lazy_drops=0, ipis_sent=2,
               ipis_received=2)
    # step 43: lazy off.
    s.counters(lazy_tlb=False, context_switches=7, switch_kernel_to_user=4,
               switch_kernel_to_kernel=3, cr3_writes=6, invlpg=0, lazy_entries=0,
               lazy_grabs=0, lazy_drops=0, shootdowns=2, ipis_sent=1, ipis_received=1,
               leave_mm=0, full_flushes=0, user_bursts=4)
    # step 44: with PCIDs, in every lazy mode: 4 flushing (first loads), 2 not (init_mm).
    s.counters(pcid=True, cr3_writes_flush=4, cr3_writes_noflush=2)
    # step 45: PCID off: all 6 flush.
    s.counters(pcid=False, cr3_writes_flush=6, cr3_writes_noflush=0)
    return s


if __name__ == "__main__":
    main(build())
