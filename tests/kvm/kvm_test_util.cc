#include "tests/kvm/kvm_test_util.h"

#include <cstdlib>
#include <string>

namespace activemm {

void KvmTest::SetUp() {
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open();
  if (!kvm.ok()) {
    const char* require = std::getenv("ACTIVEMM_REQUIRE_KVM");
    if (require != nullptr && std::string(require) == "1") {
      FAIL() << "ACTIVEMM_REQUIRE_KVM=1 but KVM is unusable: " << kvm.status().message();
    }
    GTEST_SKIP() << "KVM is unusable here: " << kvm.status().message();
  }
  kvm_ = *std::move(kvm);
}

}  // namespace activemm
