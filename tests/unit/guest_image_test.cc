// GuestImage: the embedded guest image, header checks on crafted images, and symbolization.
#include "vmm/kvm/guest_image.h"

#include <stdint.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/abi.h"
#include "vmm/kvm/guest_profile.h"

namespace activemm {
namespace {

using ::testing::StartsWith;

constexpr uint64_t kLinkVa = abi::kKernelTextBase + abi::kImageLoadPa;  // 0xffffffff80200000

// ---- The embedded image --------------------------------------------------------------------

TEST(EmbeddedGuestImageTest, HeaderMatchesTheAbi) {
  absl::StatusOr<GuestImage> img = GuestImage::Embedded();
  ASSERT_TRUE(img.ok()) << img.status();
  const abi::GuestImageHeader& h = img->header();
  EXPECT_EQ(h.magic, abi::kImageMagic);
  EXPECT_EQ(h.abi_version, abi::kAbiVersion);
  EXPECT_EQ(h.header_size, sizeof(abi::GuestImageHeader));
  EXPECT_EQ(h.load_pa, abi::kImageLoadPa);
  EXPECT_EQ(h.link_va, kLinkVa);

  ASSERT_GE(img->bytes().size(), sizeof(abi::GuestImageHeader));
  EXPECT_GE(h.entry_va, h.link_va);
  EXPECT_LT(h.entry_va, h.link_va + img->bytes().size());
  EXPECT_EQ(h.end_va % 4096, 0u);
  EXPECT_GE(h.end_va, h.link_va + img->bytes().size());
  EXPECT_GT(img->end_pa(), h.load_pa);
  EXPECT_EQ(img->end_pa(), h.end_va - h.link_va + h.load_pa);
  EXPECT_LE(img->end_pa() + abi::kBootScratchBytes, abi::kMinMemBytes);
}

// The listing comes from `nm -l`: each function knows its source file, which is how a profile
// sorts the guest's time (vmm/kvm/guest_profile.h). Every function a scenario's steps run falls in
// a bucket that names what it is for: a new function lands in "other guest code" only in the
// files no scenario runs.
TEST(EmbeddedGuestImageTest, EveryStepFunctionHasASourceFileAndABucket) {
  absl::StatusOr<GuestImage> img = GuestImage::Embedded();
  ASSERT_TRUE(img.ok()) << img.status();
  int with_file = 0;
  for (const GuestImage::Symbol& s : img->symbols()) {
    if (!s.file.empty()) ++with_file;
    const ProfileBucket b = ClassifyGuestCode(&s);
    const bool not_a_step = s.file == "main.cc" || s.file == "selftest.cc" || s.file == "cost.cc" ||
                            s.file == "format.cc" || s.file == "descriptors.cc" ||
                            s.file == "tlb_probe.cc" ||  // once, at boot
                            s.file == "hostile.cc" || s.file == "user_text.S" ||
                            s.name == "_start" ||
                            // boot code; a clang build gives it no line (nm -l finds no file)
                            s.name == "guest_main" ||
                            // cost.cc's floor loops, filed by nm -l under the cpu.h helper
                            // their first line inlines
                            s.name.find("FloorLoop<") != std::string::npos;
    EXPECT_EQ(b == ProfileBucket::kOther, not_a_step) << s.name << " (" << s.file << ")";
  }
  EXPECT_GT(with_file, 100);
  auto bucket_of = [&](uint64_t va) { return ClassifyGuestCode(img->SymbolAt(va)); };
  auto va_of = [&](const std::string& prefix) -> uint64_t {
    for (const GuestImage::Symbol& s : img->symbols()) {
      if (s.name.find(prefix) != std::string::npos) return s.va;
    }
    ADD_FAILURE() << "no symbol " << prefix;
    return 0;
  };
  EXPECT_EQ(bucket_of(va_of("::context_switch(")), ProfileBucket::kModeledKernel);
  EXPECT_EQ(bucket_of(va_of("switch_mm_irqs_off(")), ProfileBucket::kModeledKernel);
  EXPECT_EQ(bucket_of(va_of("__switch_to_asm") + 4), ProfileBucket::kModeledKernel);
  EXPECT_EQ(bucket_of(va_of("::StepLoop(")), ProfileBucket::kStepLoop);
  EXPECT_EQ(bucket_of(va_of("::RecordStep(")), ProfileBucket::kRecords);
  EXPECT_EQ(bucket_of(va_of("kick_entry")), ProfileBucket::kInterrupts);
  EXPECT_EQ(bucket_of(va_of("safe_halt_hlt") + 1), ProfileBucket::kHalted);
  EXPECT_EQ(bucket_of(va_of("enter_user")), ProfileBucket::kUserTrips);
  EXPECT_EQ(bucket_of(0x1000), ProfileBucket::kOther);  // no symbol
}

TEST(GuestProfileTest, RingThreeAndTheHostAreTheirOwnBuckets) {
  absl::StatusOr<GuestImage> img = GuestImage::Embedded();
  ASSERT_TRUE(img.ok()) << img.status();
  GuestProfile p;
  p.hz = 100;
  kvm_regs regs{};
  kvm_sregs sregs{};
  regs.rip = img->header().entry_va;
  sregs.cs.selector = 0x08;
  p.AddGuest(*img, regs, sregs);
  sregs.cs.selector = 0x23;  // ring 3: whatever the rip
  p.AddGuest(*img, regs, sregs);
  p.AddHost();
  GuestProfile q;
  q.Merge(p);
  q.Merge(p);
  EXPECT_EQ(q.samples, 6u);
  EXPECT_EQ(q.buckets[static_cast<int>(ProfileBucket::kUser)], 2u);
  EXPECT_EQ(q.buckets[static_cast<int>(ProfileBucket::kHost)], 2u);
  EXPECT_EQ(q.buckets[static_cast<int>(ProfileBucket::kOther)], 2u);  // _start: boot
  EXPECT_EQ(q.functions, (std::map<std::string, uint64_t>{{"_start (entry.S)", 2}}));
  EXPECT_EQ(FormatProfile(p),
            "profile: 3 samples at 100 Hz per vCPU: ring 3 33.3%, in the host 33.3%, other guest "
            "code 33.3%\n  most sampled guest functions: _start (entry.S) 33.3%");
}

TEST(EmbeddedGuestImageTest, SymbolizesEntryAndUserText) {
  absl::StatusOr<GuestImage> img = GuestImage::Embedded();
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_THAT(img->Symbolize(img->header().entry_va), StartsWith("_start"));
  EXPECT_EQ(img->Symbolize(img->header().end_va), "");
  EXPECT_EQ(img->Symbolize(0x1000), "");

  uint64_t alias = img->UserTextAlias(abi::kUserTextVa);
  EXPECT_NE(alias, 0u);
  EXPECT_GE(alias, img->header().link_va);
  EXPECT_LT(alias, img->header().end_va);
  EXPECT_NE(img->Symbolize(alias), "");
  EXPECT_EQ(img->UserTextAlias(abi::kUserTextVa - 1), 0u);
  EXPECT_EQ(img->UserTextAlias(0), 0u);
}

// ---- Crafted images ----------------------------------------------------------------------------

constexpr size_t kCraftedSize = 0x200;
constexpr uint64_t kCraftedEndVa = kLinkVa + 0x1000;

abi::GuestImageHeader GoodHeader() {
  abi::GuestImageHeader h{};
  h.magic = abi::kImageMagic;
  h.abi_version = abi::kAbiVersion;
  h.header_size = sizeof(abi::GuestImageHeader);
  h.load_pa = abi::kImageLoadPa;
  h.link_va = kLinkVa;
  h.entry_va = kLinkVa + 0x30;
  h.end_va = kCraftedEndVa;
  return h;
}

std::vector<uint8_t> Bytes(const abi::GuestImageHeader& h, size_t size = kCraftedSize) {
  std::vector<uint8_t> bytes(size, 0xcc);
  // Not memcpy: for size 0, data() may be null, which memcpy must not get (UBSan).
  std::copy_n(reinterpret_cast<const uint8_t*>(&h), std::min(size, sizeof h), bytes.begin());
  return bytes;
}

constexpr char kSymbols[] =
    "ffffffff80200030 T _start\n"
    "ffffffff80200100 T foo\n";

TEST(GuestImageParseTest, WellFormedImage) {
  std::vector<uint8_t> bytes = Bytes(GoodHeader());
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kSymbols);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->header().entry_va, kLinkVa + 0x30);
  EXPECT_EQ(img->bytes().data(), bytes.data());
  EXPECT_EQ(img->bytes().size(), kCraftedSize);
  EXPECT_EQ(img->end_pa(), abi::kImageLoadPa + 0x1000);
}

TEST(GuestImageParseTest, Symbolize) {
  std::vector<uint8_t> bytes = Bytes(GoodHeader());
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kSymbols);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->Symbolize(0xffffffff80200104), "foo+0x4");
  EXPECT_EQ(img->Symbolize(0xffffffff80200030), "_start+0");
  EXPECT_EQ(img->Symbolize(0xffffffff802000ff), "_start+0xcf");
  EXPECT_EQ(img->Symbolize(0xffffffff80200100), "foo+0");
  EXPECT_EQ(img->Symbolize(kCraftedEndVa - 1), "foo+0xeff");
  // Before the first symbol, and at or beyond the end of the image.
  EXPECT_EQ(img->Symbolize(0xffffffff8020002f), "");
  EXPECT_EQ(img->Symbolize(kLinkVa), "");
  EXPECT_EQ(img->Symbolize(0), "");
  EXPECT_EQ(img->Symbolize(kCraftedEndVa), "");
  EXPECT_EQ(img->Symbolize(0xffffffffffffffff), "");
}

TEST(GuestImageParseTest, SymbolListingQuirks) {
  // Unsorted input, data symbols, lowercase and weak code symbols, demangled names with spaces,
  // and lines that are not symbols at all.
  constexpr char kListing[] =
      "ffffffff80200200 t local_fn\n"
      "ffffffff80200030 T _start\n"
      "0000000000200000 A LOAD_PA\n"
      "ffffffff80200180 R some_table\n"
      "ffffffff80200300 W weak_fn\n"
      "ffffffff80200400 T ns::(anonymous namespace)::Fn(int, long)\n"
      "ffffffff80200500 B bss_var\n"
      "garbage\n"
      "\n"
      "zzzz T not_hex\n";
  std::vector<uint8_t> bytes = Bytes(GoodHeader());
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kListing);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->Symbolize(0xffffffff80200190), "_start+0x160");  // R is not code
  EXPECT_EQ(img->Symbolize(0xffffffff80200208), "local_fn+0x8");
  EXPECT_EQ(img->Symbolize(0xffffffff80200300), "weak_fn+0");
  EXPECT_EQ(img->Symbolize(0xffffffff80200510), "ns::(anonymous namespace)::Fn(int, long)+0x110");
}

TEST(GuestImageParseTest, SourceFilesFromAnNmDashLListing) {
  // `nm -l` appends a tab and "path:line"; the file's name is kept, its folder dropped.
  constexpr char kListing[] =
      "ffffffff80200030 T _start\tbuild/guest/guest/arch/entry.S:22\n"
      "ffffffff80200100 T ns::Fn(int, long)\tguest/kernel/sched.cc:142\n"
      "ffffffff80200200 T no_line\tlib.cc\n"
      "ffffffff80200300 T bare\n";
  std::vector<uint8_t> bytes = Bytes(GoodHeader());
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kListing);
  ASSERT_TRUE(img.ok()) << img.status();
  ASSERT_EQ(img->symbols().size(), 4u);
  EXPECT_EQ(img->SymbolAt(0xffffffff80200040)->file, "entry.S");
  EXPECT_EQ(img->SymbolAt(0xffffffff80200100)->name, "ns::Fn(int, long)");
  EXPECT_EQ(img->SymbolAt(0xffffffff80200100)->file, "sched.cc");
  EXPECT_EQ(img->SymbolAt(0xffffffff80200200)->file, "lib.cc");
  EXPECT_EQ(img->SymbolAt(0xffffffff80200300)->file, "");
  EXPECT_EQ(img->Symbolize(0xffffffff80200104), "ns::Fn(int, long)+0x4");
  EXPECT_EQ(img->SymbolAt(0xffffffff8020002f), nullptr);
}

TEST(GuestImageParseTest, UserTextAliasFromListing) {
  constexpr char kListing[] =
      "ffffffff80200030 T _start\n"
      "ffffffff80200100 T __user_text_start\n"
      "ffffffff80200120 T user_fn\n"
      "ffffffff80200180 R __user_text_end\n";
  std::vector<uint8_t> bytes = Bytes(GoodHeader());
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kListing);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->UserTextAlias(abi::kUserTextVa), 0xffffffff80200100u);
  EXPECT_EQ(img->UserTextAlias(abi::kUserTextVa + 0x24), 0xffffffff80200124u);
  EXPECT_EQ(img->Symbolize(img->UserTextAlias(abi::kUserTextVa + 0x24)), "user_fn+0x4");
  EXPECT_EQ(img->UserTextAlias(abi::kUserTextVa + 0x7f), 0xffffffff8020017fu);
  EXPECT_EQ(img->UserTextAlias(abi::kUserTextVa + 0x80), 0u);
  EXPECT_EQ(img->UserTextAlias(abi::kUserTextVa - 1), 0u);
  EXPECT_EQ(img->UserTextAlias(abi::kUserDataVa), 0u);

  // Without the window symbols nothing is an alias.
  absl::StatusOr<GuestImage> bare = GuestImage::Parse(bytes, kSymbols);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->UserTextAlias(abi::kUserTextVa), 0u);
}

// A user address far above the text window must not wrap around to an alias (the kernel-half
// start plus a large offset overflows 2^64).
TEST(GuestImageParseTest, UserTextAliasFarAboveTheWindowIsZero) {
  constexpr char kListing[] =
      "ffffffff80200100 T __user_text_start\n"
      "ffffffff80200180 R __user_text_end\n";
  std::vector<uint8_t> bytes = Bytes(GoodHeader());
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kListing);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->UserTextAlias(abi::kUserStackTopVa - 8), 0u);
  EXPECT_EQ(img->UserTextAlias(0x100000000), 0u);
  EXPECT_EQ(img->UserTextAlias(abi::kKernelTextBase), 0u);
  EXPECT_EQ(img->UserTextAlias(0xffffffffffffffff), 0u);
}

struct BadImageCase {
  const char* name;
  void (*corrupt)(abi::GuestImageHeader& h);
  size_t size;
  absl::StatusCode code;
  friend std::ostream& operator<<(std::ostream& os, const BadImageCase& c) { return os << c.name; }
};

class GuestImageRejectTest : public ::testing::TestWithParam<BadImageCase> {};

TEST_P(GuestImageRejectTest, Rejected) {
  const BadImageCase& c = GetParam();
  abi::GuestImageHeader h = GoodHeader();
  c.corrupt(h);
  std::vector<uint8_t> bytes = Bytes(h, c.size);
  absl::StatusOr<GuestImage> img = GuestImage::Parse(bytes, kSymbols);
  EXPECT_EQ(img.status().code(), c.code) << img.status();
}

void Keep(abi::GuestImageHeader&) {}

INSTANTIATE_TEST_SUITE_P(
    Cases, GuestImageRejectTest,
    ::testing::Values(
        BadImageCase{"Empty", Keep, 0, absl::StatusCode::kInvalidArgument},
        BadImageCase{"ShorterThanHeader", Keep, sizeof(abi::GuestImageHeader) - 1,
                     absl::StatusCode::kInvalidArgument},
        BadImageCase{"BadMagic", [](abi::GuestImageHeader& h) { h.magic ^= 1; }, kCraftedSize,
                     absl::StatusCode::kInvalidArgument},
        BadImageCase{"NewerAbi", [](abi::GuestImageHeader& h) { h.abi_version++; }, kCraftedSize,
                     absl::StatusCode::kFailedPrecondition},
        BadImageCase{"OlderAbi", [](abi::GuestImageHeader& h) { h.abi_version--; }, kCraftedSize,
                     absl::StatusCode::kFailedPrecondition},
        BadImageCase{"HeaderSize", [](abi::GuestImageHeader& h) { h.header_size = 40; },
                     kCraftedSize, absl::StatusCode::kInvalidArgument},
        BadImageCase{"LoadPa", [](abi::GuestImageHeader& h) { h.load_pa = 0x400000; }, kCraftedSize,
                     absl::StatusCode::kInvalidArgument},
        BadImageCase{"LinkVa", [](abi::GuestImageHeader& h) { h.link_va += 0x1000; }, kCraftedSize,
                     absl::StatusCode::kInvalidArgument},
        BadImageCase{"EntryBeforeImage", [](abi::GuestImageHeader& h) { h.entry_va = kLinkVa - 1; },
                     kCraftedSize, absl::StatusCode::kInvalidArgument},
        BadImageCase{"EntryAtEndOfBytes",
                     [](abi::GuestImageHeader& h) { h.entry_va = kLinkVa + kCraftedSize; },
                     kCraftedSize, absl::StatusCode::kInvalidArgument},
        BadImageCase{"EntryInBss",
                     [](abi::GuestImageHeader& h) { h.entry_va = kCraftedEndVa - 0x10; },
                     kCraftedSize, absl::StatusCode::kInvalidArgument},
        BadImageCase{"EntryZero", [](abi::GuestImageHeader& h) { h.entry_va = 0; }, kCraftedSize,
                     absl::StatusCode::kInvalidArgument},
        BadImageCase{"EndBeforeBytesEnd",
                     [](abi::GuestImageHeader& h) { h.end_va = kLinkVa + kCraftedSize - 1; },
                     kCraftedSize, absl::StatusCode::kInvalidArgument}),
    [](const ::testing::TestParamInfo<BadImageCase>& info) { return info.param.name; });

TEST(GuestImageParseTest, EntryOnLastByteIsAccepted) {
  abi::GuestImageHeader h = GoodHeader();
  h.entry_va = kLinkVa + kCraftedSize - 1;
  h.end_va = kLinkVa + kCraftedSize;
  std::vector<uint8_t> bytes = Bytes(h);
  EXPECT_TRUE(GuestImage::Parse(bytes, "").ok());
}

TEST(GuestImageParseTest, ExactlyAHeaderIsTooSmallForAnEntry) {
  abi::GuestImageHeader h = GoodHeader();
  std::vector<uint8_t> bytes = Bytes(h, sizeof h);  // entry_va (+0x30) is past the bytes
  EXPECT_EQ(GuestImage::Parse(bytes, "").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace activemm
