// x86-64 4-level page-table code shared by the guest, the host and the host's unit tests.
//
// The code is templated over how a table page is reached, so one walker serves three worlds
// (the habit of gVisor's pagetables and Hyperlight's shared crate):
//   - the guest reaches a table through its direct map (physical + kDirectMapBase);
//   - the host reaches it through the bounds-checked GuestMemory, which refuses any physical
//     address outside guest RAM, so a corrupted guest table is reported, never followed blindly;
//   - unit tests reach it in plain host memory.
//
// A Mem type provides:
//   uint64_t* Table(uint64_t pa);   // the 512 entries at pa, or nullptr when pa is not usable
//   uint64_t AllocTable();          // a zeroed table page's pa, or 0 when out of memory
//                                   // (only Map() calls it)
// Freestanding: no library beyond <stdint.h>.
#ifndef ACTIVEMM_SHARED_PAGE_TABLE_H_
#define ACTIVEMM_SHARED_PAGE_TABLE_H_

#include <stdint.h>

#include "shared/x86.h"

namespace activemm {

enum class PtStatus : uint8_t {
  kOk = 0,
  kNotMapped,       // no present leaf covers the address
  kBadTable,        // a table address was refused by Mem::Table (corrupt or out of range)
  kNoMemory,        // Mem::AllocTable failed
  kAlreadyMapped,   // Map over a present leaf
  kHugeInTheWay,    // a huge page covers the address at a level Map or Unmap must descend
  kNotCanonical,    // the virtual address is not canonical
  kMisaligned,      // va or pa not aligned to the page size
  kBudgetExceeded,  // ForEachLeaf visited more entries than allowed
  kLoop             // ForEachLeaf met a table that is also one above it on its path
};

struct WalkResult {
  PtStatus status = PtStatus::kNotMapped;
  x86::Pte leaf;          // the leaf entry (valid when status == kOk)
  int level = 0;          // 1 = 4 KiB page, 2 = 2 MiB page, 3 = 1 GiB page
  uint64_t pa = 0;        // the translated physical address of va
  uint64_t entry_pa = 0;  // physical address of the entry that stopped the walk
};

// Size in bytes of the region a leaf at `level` maps.
constexpr uint64_t LevelSize(int level) { return 1ull << (x86::kPageShift + 9 * (level - 1)); }

template <typename Mem>
class PageTable {
 public:
  PageTable(Mem& mem, uint64_t root_pa) : mem_(mem), root_(root_pa) {}

  uint64_t root() const { return root_; }

  // Translates va as the MMU would (SDM 4.5.4), without touching A/D bits.
  WalkResult Walk(uint64_t va) const {
    WalkResult r;
    if (!x86::IsCanonical(va)) {
      r.status = PtStatus::kNotCanonical;
      return r;
    }
    uint64_t table = root_;
    for (int level = 4; level >= 1; --level) {
      uint64_t* t = mem_.Table(table);
      int idx = x86::TableIndex(va, level);
      r.entry_pa = table + static_cast<uint64_t>(idx) * 8;
      if (t == nullptr) {
        r.status = PtStatus::kBadTable;
        return r;
      }
      x86::Pte e(t[idx]);
      if (!e.present()) {
        r.status = PtStatus::kNotMapped;
        r.level = level;
        return r;
      }
      if (level == 1 || (e.huge() && level <= 3)) {
        r.status = PtStatus::kOk;
        r.leaf = e;
        r.level = level;
        // A huge leaf's bit 12 is PAT, not address: the mapped frame is size-aligned.
        uint64_t offset_mask = LevelSize(level) - 1;
        r.pa = (e.addr() & ~offset_mask) + (va & offset_mask);
        return r;
      }
      table = e.addr();
    }
    return r;  // not reached
  }

  // Maps one page of `page_size` (4 KiB or 2 MiB) at va to pa with leaf `flags` (Present is
  // implied). Intermediate tables are created as Present|Writable, plus User when the leaf is a
  // user page: permissions are decided at the leaf, as Linux's _PAGE_TABLE does.
  PtStatus Map(uint64_t va, uint64_t pa, uint64_t flags, uint64_t page_size = x86::kPageSize) {
    if (!x86::IsCanonical(va)) return PtStatus::kNotCanonical;
    int leaf_level = page_size == x86::kHugePageSize ? 2 : 1;
    if (page_size != x86::kPageSize && page_size != x86::kHugePageSize) {
      return PtStatus::kMisaligned;
    }
    if ((va | pa) & (page_size - 1)) return PtStatus::kMisaligned;
    uint64_t table_flags = x86::Pte::kPresent | x86::Pte::kWritable | (flags & x86::Pte::kUser);
    uint64_t table = root_;
    for (int level = 4; level > leaf_level; --level) {
      uint64_t* t = mem_.Table(table);
      if (t == nullptr) return PtStatus::kBadTable;
      uint64_t& slot = t[x86::TableIndex(va, level)];
      x86::Pte e(slot);
      if (!e.present()) {
        uint64_t fresh = mem_.AllocTable();
        if (fresh == 0) return PtStatus::kNoMemory;
        slot = x86::Pte::Make(fresh, table_flags).raw();
        table = fresh;
        continue;
      }
      if (e.huge()) return PtStatus::kHugeInTheWay;
      if ((e.raw() & table_flags) != table_flags) slot = e.raw() | table_flags;
      table = e.addr();
    }
    uint64_t* t = mem_.Table(table);
    if (t == nullptr) return PtStatus::kBadTable;
    uint64_t& slot = t[x86::TableIndex(va, leaf_level)];
    if (x86::Pte(slot).present()) return PtStatus::kAlreadyMapped;
    slot = x86::Pte::Make(pa, flags | x86::Pte::kPresent | (leaf_level == 2 ? x86::Pte::kHuge : 0))
               .raw();
    return PtStatus::kOk;
  }

  // Clears the 4 KiB leaf that maps va and returns it in *old. Table pages are left in place.
  PtStatus Unmap(uint64_t va, x86::Pte* old) {
    WalkResult w = Walk(va);
    if (w.status != PtStatus::kOk) return w.status;
    if (w.level != 1) return PtStatus::kHugeInTheWay;
    uint64_t table = w.entry_pa & ~(x86::kPageSize - 1);
    uint64_t* t = mem_.Table(table);
    if (t == nullptr) return PtStatus::kBadTable;
    uint64_t& slot = t[x86::TableIndex(va, 1)];
    *old = x86::Pte(slot);
    slot = 0;
    return PtStatus::kOk;
  }

  // Sets and clears permission bits of the 4 KiB leaf that maps va (mprotect); *old gets the
  // leaf as it was.
  PtStatus SetLeafFlags(uint64_t va, uint64_t set, uint64_t clear, x86::Pte* old) {
    WalkResult w = Walk(va);
    if (w.status != PtStatus::kOk) return w.status;
    if (w.level != 1) return PtStatus::kHugeInTheWay;
    uint64_t* t = mem_.Table(w.entry_pa & ~(x86::kPageSize - 1));
    if (t == nullptr) return PtStatus::kBadTable;
    uint64_t& slot = t[x86::TableIndex(va, 1)];
    *old = x86::Pte(slot);
    slot = (slot | set) & ~clear;
    return PtStatus::kOk;
  }

  // Calls f(va, leaf, level) for every present leaf mapping inside [va_begin, va_end), in
  // ascending order. A table that is also a table above it on the walk's path (an entry that
  // points at its own table, or back at the PML4: a loop) stops the walk with kLoop instead of
  // being followed; and at most `budget` present entries are visited, so tables shared many
  // times over cannot make the walk run away either. f returns false to stop early.
  template <typename F>
  PtStatus ForEachLeaf(uint64_t va_begin, uint64_t va_end, uint64_t budget, F&& f) const {
    uint64_t visited = 0;
    bool stop = false;
    uint64_t path[4] = {};
    return Visit(root_, 4, 0, va_begin, va_end, budget, visited, stop, f, path);
  }

 private:
  static constexpr uint64_t SignExtend(uint64_t va) {
    return (va & (1ull << 47)) ? (va | 0xffff000000000000ull) : va;
  }

  // path[4 - l] is the table the walk is in at level l, for the levels above `level`.
  template <typename F>
  PtStatus Visit(uint64_t table, int level, uint64_t base, uint64_t lo, uint64_t hi,
                 uint64_t budget, uint64_t& visited, bool& stop, F& f, uint64_t (&path)[4]) const {
    for (int above = 0; above < 4 - level; ++above) {
      if (path[above] == table) return PtStatus::kLoop;
    }
    path[4 - level] = table;
    uint64_t* t = mem_.Table(table);
    if (t == nullptr) return PtStatus::kBadTable;
    uint64_t size = LevelSize(level);
    for (int i = 0; i < x86::kEntriesPerTable && !stop; ++i) {
      uint64_t va = SignExtend(base + static_cast<uint64_t>(i) * size);
      // Skip entries wholly outside [lo, hi); va + size - 1 cannot overflow for canonical va.
      if (va + (size - 1) < lo || va >= hi) continue;
      x86::Pte e(t[i]);
      if (!e.present()) continue;
      if (++visited > budget) return PtStatus::kBudgetExceeded;
      if (level == 1 || (e.huge() && level <= 3)) {
        if (!f(va, e, level)) stop = true;
        continue;
      }
      PtStatus s = Visit(e.addr(), level - 1, va, lo, hi, budget, visited, stop, f, path);
      if (s != PtStatus::kOk) return s;
    }
    return PtStatus::kOk;
  }

  Mem& mem_;
  uint64_t root_;
};

constexpr const char* PtStatusName(PtStatus s) {
  switch (s) {
    case PtStatus::kOk:
      return "ok";
    case PtStatus::kNotMapped:
      return "not mapped";
    case PtStatus::kBadTable:
      return "table address outside guest RAM";
    case PtStatus::kNoMemory:
      return "out of memory for a table page";
    case PtStatus::kAlreadyMapped:
      return "already mapped";
    case PtStatus::kHugeInTheWay:
      return "a huge page covers the address";
    case PtStatus::kNotCanonical:
      return "non-canonical address";
    case PtStatus::kMisaligned:
      return "misaligned address";
    case PtStatus::kBudgetExceeded:
      return "too many entries (tables shared over and over?)";
    case PtStatus::kLoop:
      return "loop: a table entry points at its own table or at one above it";
  }
  return "?";
}

}  // namespace activemm

#endif  // ACTIVEMM_SHARED_PAGE_TABLE_H_
