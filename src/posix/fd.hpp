// src/posix/fd.hpp — RAII file descriptors and EINTR-safe I/O (the bottom layer; includes nothing of
// mproc above it). Modelled on fmt's `file`: move-only, -1 means empty, close() is never retried.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>

namespace mproc::detail::posix {

/// Throw std::system_error(errno, what).
[[noreturn]] void throw_errno(const char* what);
[[noreturn]] void throw_errno(int err, const char* what);

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  /// Close the current fd (if any) and own fd. close() is not retried on EINTR: on Linux the fd is
  /// released even when close reports EINTR, and retrying could close a descriptor another thread
  /// just received (close(2), "Dealing with error returns from close()").
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

struct Pipe {
  UniqueFd read, write;
};
/// pipe2(O_CLOEXEC | extra_flags). std::system_error on failure.
Pipe make_pipe(int extra_flags = 0);

/// read(2) restarted on EINTR. Returns bytes read (0 at EOF) or -1 with errno set (never EINTR).
ssize_t read_some(int fd, void* buf, std::size_t n) noexcept;
/// Write all n bytes, restarting on EINTR and short writes. False with errno set on failure.
bool write_all(int fd, const void* buf, std::size_t n) noexcept;
/// Read exactly n bytes. False at EOF before n bytes or on error (errno set; 0 for EOF).
bool read_exact(int fd, void* buf, std::size_t n) noexcept;

/// A deadline on the monotonic clock; nullopt timeout means "no deadline".
class Deadline {
 public:
  explicit Deadline(std::optional<std::chrono::nanoseconds> timeout);
  bool infinite() const noexcept { return !end_; }
  /// Time left, clamped at zero; nullopt when infinite.
  std::optional<std::chrono::nanoseconds> remaining() const;
  /// Remaining time as a poll(2) timeout in ms (rounded up, so we never wake early; -1 infinite).
  int poll_timeout_ms() const;
  bool expired() const;

 private:
  std::optional<std::chrono::steady_clock::time_point> end_;
};

/// poll(2) over fds until one is ready or the deadline passes; restarts on EINTR with the remaining
/// time. Returns the number ready (0 on timeout). std::system_error on failure.
int poll_until(pollfd* fds, std::size_t n, const Deadline& deadline);
/// Convenience: wait for one fd to be readable (POLLIN, or POLLHUP/POLLERR). True if ready.
bool wait_readable(int fd, const Deadline& deadline);

}  // namespace mproc::detail::posix
