// Reports built from guest state: exception names, fault and panic reports, RIP descriptions.
#include "vmm/kvm/guest_report.h"

#include <linux/kvm.h>
#include <stdint.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/abi.h"
#include "shared/x86.h"
#include "vmm/kvm/guest_image.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint64_t kLinkVa = abi::kKernelTextBase + abi::kImageLoadPa;  // 0xffffffff80200000

// A tiny crafted image whose symbols and user text window the tests control.
class GuestReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    abi::GuestImageHeader h{};
    h.magic = abi::kImageMagic;
    h.abi_version = abi::kAbiVersion;
    h.header_size = sizeof h;
    h.load_pa = abi::kImageLoadPa;
    h.link_va = kLinkVa;
    h.entry_va = kLinkVa + 0x30;
    h.end_va = kLinkVa + 0x1000;
    bytes_.assign(0x200, 0);
    std::memcpy(bytes_.data(), &h, sizeof h);
    absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes_,
                                                       "ffffffff80200030 T _start\n"
                                                       "ffffffff80200100 T __user_text_start\n"
                                                       "ffffffff80200120 T user_main\n"
                                                       "ffffffff80200180 R __user_text_end\n"
                                                       "ffffffff80200200 T handle_fault\n");
    ASSERT_TRUE(img.ok()) << img.status();
    image_ = *std::move(img);
  }

  std::vector<uint8_t> bytes_;
  GuestImage image_;
};

// ---- VectorName --------------------------------------------------------------------------------

TEST(VectorNameTest, ExceptionsAndOtherVectors) {
  EXPECT_THAT(VectorName(x86::kVecPageFault), HasSubstr("#PF"));
  EXPECT_EQ(VectorName(14), "#PF (page fault)");
  EXPECT_THAT(VectorName(x86::kVecDivide), StartsWith("#DE"));
  EXPECT_THAT(VectorName(x86::kVecInvalidOpcode), StartsWith("#UD"));
  EXPECT_THAT(VectorName(x86::kVecDoubleFault), StartsWith("#DF"));
  EXPECT_THAT(VectorName(x86::kVecGeneralProtection), StartsWith("#GP"));
  EXPECT_THAT(VectorName(21), StartsWith("#CP"));
  EXPECT_EQ(VectorName(22), "vector 0x16");
  EXPECT_EQ(VectorName(0x40), "vector 0x40");
  EXPECT_EQ(VectorName(0xff), "vector 0xff");
  EXPECT_EQ(VectorName(0xffffffffffffffff), "vector 0xffffffffffffffff");
}

// ---- FormatFault -------------------------------------------------------------------------------

TEST_F(GuestReportTest, UserWritePageFault) {
  abi::FaultReport f{};
  f.vector = x86::kVecPageFault;
  f.error_code = x86::kPfWrite | x86::kPfUser;  // 0x6
  f.cr2 = 0x10004008;
  f.cr3 = 0x1234000;
  f.rip = abi::kUserTextVa + 0x24;
  f.cs = x86::kUserCs;
  f.rflags = 0x202;
  f.rsp = 0x7fffffefff0;
  f.ss = x86::kUserDs;
  std::string s = FormatFault(3, f, image_);
  EXPECT_THAT(s, HasSubstr("CPU 3"));
  EXPECT_THAT(s, HasSubstr("#PF"));
  EXPECT_THAT(s, HasSubstr("error code 0x6"));
  EXPECT_THAT(s, HasSubstr("not present"));
  EXPECT_THAT(s, HasSubstr("write"));
  EXPECT_THAT(s, HasSubstr("user mode"));
  EXPECT_THAT(s, HasSubstr("CR2 0x10004008"));
  EXPECT_THAT(s, HasSubstr("ring 3"));
  EXPECT_THAT(s, HasSubstr("CR3 0x1234000"));
  EXPECT_THAT(s, HasSubstr("RSP 0x7fffffefff0"));
  EXPECT_THAT(s, HasSubstr("RIP 0x400024 <user_main+0x4, user text>"));
  EXPECT_THAT(s, Not(HasSubstr("instruction fetch")));
  EXPECT_THAT(s, Not(HasSubstr("kernel mode")));
  EXPECT_THAT(s, Not(HasSubstr("protection violation")));
}

TEST_F(GuestReportTest, KernelPageFaultVariants) {
  abi::FaultReport f{};
  f.vector = x86::kVecPageFault;
  f.cs = x86::kKernelCs;
  f.rip = 0xffffffff80200210;
  f.cr2 = 0xffffc90000001000;

  f.error_code = x86::kPfPresent;  // read of a present page
  std::string read = FormatFault(0, f, image_);
  EXPECT_THAT(read, HasSubstr("(protection violation, read, kernel mode)"));
  EXPECT_THAT(read, HasSubstr("ring 0"));
  EXPECT_THAT(read, HasSubstr("CR2 0xffffc90000001000"));
  EXPECT_THAT(read, HasSubstr("RIP 0xffffffff80200210 <handle_fault+0x10>"));

  f.error_code = x86::kPfInstruction;  // fetch from a non-present page
  EXPECT_THAT(FormatFault(0, f, image_),
              HasSubstr("(not present, read, kernel mode, instruction fetch)"));
}

TEST_F(GuestReportTest, NonPageFaultHasNoPageFaultDetail) {
  abi::FaultReport f{};
  f.vector = x86::kVecGeneralProtection;
  f.error_code = 0x28;
  f.rip = 0x1234;  // no symbol: the bare address
  f.cs = x86::kKernelCs;
  std::string s = FormatFault(1, f, image_);
  EXPECT_THAT(s, HasSubstr("#GP"));
  EXPECT_THAT(s, HasSubstr("error code 0x28\n"));
  EXPECT_THAT(s, HasSubstr("RIP 0x1234\n"));
  EXPECT_THAT(s, Not(HasSubstr("not present")));
  EXPECT_THAT(s, Not(HasSubstr("mode")));
}

// ---- DescribeRip -------------------------------------------------------------------------------

TEST_F(GuestReportTest, DescribeRip) {
  EXPECT_EQ(DescribeRip(image_, 0xffffffff80200034), "0xffffffff80200034 <_start+0x4>");
  EXPECT_EQ(DescribeRip(image_, abi::kUserTextVa + 0x24), "0x400024 <user_main+0x4, user text>");
  EXPECT_EQ(DescribeRip(image_, abi::kUserTextVa + 4),
            "0x400004 <__user_text_start+0x4, user text>");
  // Past the user text window, and below the image.
  EXPECT_EQ(DescribeRip(image_, abi::kUserTextVa + 0x80), "0x400080");
  EXPECT_EQ(DescribeRip(image_, 0x1000), "0x1000");
  EXPECT_EQ(DescribeRip(image_, kLinkVa + 0x1000), "0xffffffff80201000");
}

// ---- FormatPanic -------------------------------------------------------------------------------

TEST(FormatPanicTest, Ordinary) {
  abi::PanicReport p{};
  std::strcpy(p.message, "x == y");
  std::strcpy(p.file, "guest/main.cc");
  p.line = 42;
  p.num_values = 2;
  p.values[0] = 0x10;
  p.values[1] = 0;
  p.values[2] = 0x99;  // beyond num_values: not printed
  EXPECT_EQ(FormatPanic(2, p),
            "guest panic on CPU 2 at guest/main.cc:42: x == y [values: 0x10, 0]");
  p.num_values = 0;
  EXPECT_EQ(FormatPanic(2, p), "guest panic on CPU 2 at guest/main.cc:42: x == y");
}

TEST(FormatPanicTest, BoundedHoweverTheGuestFilledIt) {
  abi::PanicReport p;
  std::memset(&p, 0xff, sizeof p);
  std::memset(p.message, 'A', sizeof p.message);  // no NUL
  std::memset(p.file, 'F', sizeof p.file);        // no NUL
  p.line = 7;
  p.num_values = 1000;
  for (int i = 0; i < abi::kPanicValuesMax; ++i) p.values[i] = 0x1000 + i;
  std::string s = FormatPanic(0, p);
  EXPECT_EQ(std::count(s.begin(), s.end(), 'A'), static_cast<long>(abi::kPanicMessageMax));
  EXPECT_EQ(std::count(s.begin(), s.end(), 'F'), static_cast<long>(abi::kPanicFileMax));
  EXPECT_THAT(s, HasSubstr(":7: "));
  static_assert(abi::kPanicValuesMax == 4, "update the expected values");
  EXPECT_THAT(s, HasSubstr(" [values: 0x1000, 0x1001, 0x1002, 0x1003]"));
  // At most kPanicValuesMax values: one comma fewer than that in the list.
  EXPECT_EQ(std::count(s.begin(), s.end(), ','), abi::kPanicValuesMax - 1);
  EXPECT_EQ(s.back(), ']');
  EXPECT_LT(s.size(), 400u);
}

TEST(FormatPanicTest, UnprintableBytesAreReplaced) {
  abi::PanicReport p{};
  std::strcpy(p.message, "bad\x1b[2Jthing\n");
  std::strcpy(p.file, "f.cc");
  EXPECT_EQ(FormatPanic(0, p), "guest panic on CPU 0 at f.cc:0: bad?[2Jthing?");
}

// ---- FormatVcpuPosition ------------------------------------------------------------------------

TEST_F(GuestReportTest, VcpuPosition) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  regs.rip = 0xffffffff80200200;
  regs.rsp = 0xffffffff80345000;
  regs.rflags = 0x202;
  sregs.cr3 = 0x5000;
  EXPECT_EQ(FormatVcpuPosition(regs, sregs, true, image_),
            "halted at RIP 0xffffffff80200200 <handle_fault+0>, RSP 0xffffffff80345000, "
            "CR3 0x5000, interrupts on");
  regs.rflags = 0x2;
  EXPECT_THAT(FormatVcpuPosition(regs, sregs, false, image_),
              StartsWith("running at RIP 0xffffffff80200200"));
  EXPECT_THAT(FormatVcpuPosition(regs, sregs, false, image_), HasSubstr("interrupts off"));
}

// ---- DescribeLapic -----------------------------------------------------------------------------

// Sets vector `v` in the 256-bit register set at `offset` of the APIC page (SDM 11.8.4).
void SetVector(kvm_lapic_state& lapic, int offset, int v) {
  uint32_t bits;
  std::memcpy(&bits, lapic.regs + offset + (v / 32) * 0x10, sizeof bits);
  bits |= 1u << (v % 32);
  std::memcpy(lapic.regs + offset + (v / 32) * 0x10, &bits, sizeof bits);
}

TEST(DescribeLapicTest, AnEmptyApic) {
  kvm_lapic_state lapic{};
  EXPECT_EQ(DescribeLapic(lapic), "APIC: pending none; in service none; TPR 0");
}

TEST(DescribeLapicTest, PendingAndInServiceVectorsInOrderWithTpr) {
  kvm_lapic_state lapic{};
  SetVector(lapic, 0x200, 0xf1);  // IRR
  SetVector(lapic, 0x200, 0x20);
  SetVector(lapic, 0x100, 0xf2);  // ISR
  SetVector(lapic, 0x100, 0xff);
  lapic.regs[0x80] = 0x10;  // TPR
  EXPECT_EQ(DescribeLapic(lapic), "APIC: pending 0x20 0xf1; in service 0xf2 0xff; TPR 0x10");
}

}  // namespace
}  // namespace activemm

namespace activemm {
namespace {

TEST(DescribePtePermsTest, NamesEachPermissionBit) {
  using x86::Pte;
  EXPECT_EQ(DescribePtePerms(Pte::kPresent | Pte::kWritable | Pte::kUser | Pte::kNoExecute),
            "WUNX");
  EXPECT_EQ(DescribePtePerms(Pte::kPresent | Pte::kUser), "-UX");
  EXPECT_EQ(DescribePtePerms(Pte::kPresent), "--X");
  EXPECT_EQ(DescribePtePerms(0), "---X");
}

}  // namespace
}  // namespace activemm
