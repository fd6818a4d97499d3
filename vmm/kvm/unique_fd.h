// An owned file descriptor, closed on destruction.
#ifndef ACTIVEMM_VMM_KVM_UNIQUE_FD_H_
#define ACTIVEMM_VMM_KVM_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace activemm {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_UNIQUE_FD_H_
