// Shared set-up for tests that run guests on real KVM.
#ifndef ACTIVEMM_TESTS_KVM_KVM_TEST_UTIL_H_
#define ACTIVEMM_TESTS_KVM_KVM_TEST_UTIL_H_

#include <memory>

#include "gtest/gtest.h"
#include "vmm/kvm/kvm.h"

namespace activemm {

// Opens /dev/kvm in SetUp. Where it is unusable the test is skipped with the reason, unless
// ACTIVEMM_REQUIRE_KVM is set (scripts/test.sh sets it when KVM is usable), then it fails:
// a skipped KVM test proves nothing.
class KvmTest : public testing::Test {
 protected:
  void SetUp() override;
  const Kvm& kvm() const { return *kvm_; }

 private:
  std::unique_ptr<Kvm> kvm_;
};

}  // namespace activemm

#endif  // ACTIVEMM_TESTS_KVM_KVM_TEST_UTIL_H_
