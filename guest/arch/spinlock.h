// A test-and-test-and-set spinlock for the guest's shared structures.
#ifndef ACTIVEMM_GUEST_ARCH_SPINLOCK_H_
#define ACTIVEMM_GUEST_ARCH_SPINLOCK_H_

#include <stdint.h>

#include "guest/arch/cpu.h"

namespace activemm::guest {

class SpinLock {
 public:
  void Lock() {
    // Spin on a plain load so waiters do not bounce the line with locked writes.
    while (__atomic_exchange_n(&locked_, 1u, __ATOMIC_ACQUIRE) != 0) {
      while (__atomic_load_n(&locked_, __ATOMIC_RELAXED) != 0) Pause();
    }
  }
  void Unlock() { __atomic_store_n(&locked_, 0u, __ATOMIC_RELEASE); }

 private:
  uint32_t locked_ = 0;
};

class SpinLockGuard {
 public:
  explicit SpinLockGuard(SpinLock& l) : l_(l) { l_.Lock(); }
  ~SpinLockGuard() { l_.Unlock(); }
  SpinLockGuard(const SpinLockGuard&) = delete;
  SpinLockGuard& operator=(const SpinLockGuard&) = delete;

 private:
  SpinLock& l_;
};

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_SPINLOCK_H_
