#include "posix/fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace mproc::detail::posix {

void throw_errno(int err, const char* what) { throw std::system_error(err, std::system_category(), what); }
void throw_errno(const char* what) { throw_errno(errno, what); }

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) {
    int saved = errno;
    ::close(fd_);  // never retried on EINTR: see the header
    errno = saved;
  }
  fd_ = fd;
}

Pipe make_pipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) throw_errno("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

ssize_t read_some(int fd, void* buf, std::size_t n) noexcept {
  for (;;) {
    ssize_t r = ::read(fd, buf, n);
    if (r >= 0 || errno != EINTR) return r;
  }
}

bool write_all(int fd, const void* buf, std::size_t n) noexcept {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_exact(int fd, void* buf, std::size_t n) noexcept {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = read_some(fd, p, n);
    if (r < 0) return false;
    if (r == 0) {
      errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

Deadline::Deadline(std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return;
  const auto now = std::chrono::steady_clock::now();
  // Saturate instead of overflowing time_point arithmetic for huge timeouts.
  if (*timeout >= std::chrono::steady_clock::time_point::max() - now)
    return;  // effectively infinite
  end_ = now + *timeout;
}

std::optional<std::chrono::nanoseconds> Deadline::remaining() const {
  if (!end_) return std::nullopt;
  auto left = *end_ - std::chrono::steady_clock::now();
  if (left < std::chrono::nanoseconds::zero()) return std::chrono::nanoseconds::zero();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(left);
}

int Deadline::poll_timeout_ms() const {
  auto left = remaining();
  if (!left) return -1;
  auto ms = (left->count() + 999'999) / 1'000'000;  // round up: poll must not return before the deadline
  if (ms > 0x7fffffff) return 0x7fffffff;
  return static_cast<int>(ms);
}

bool Deadline::expired() const {
  auto left = remaining();
  return left && left->count() == 0;
}

int poll_until(pollfd* fds, std::size_t n, const Deadline& deadline) {
  for (;;) {
    int r = ::poll(fds, n, deadline.poll_timeout_ms());
    if (r > 0) return r;
    if (r == 0) {
      // poll's clock is not exactly ours; only report a timeout once our deadline truly passed.
      if (deadline.expired()) return 0;
      continue;
    }
    if (errno != EINTR) throw_errno("poll");
    // EINTR: loop with the remaining time, so the deadline holds however many signals arrive.
  }
}

bool wait_readable(int fd, const Deadline& deadline) {
  pollfd p{fd, POLLIN, 0};
  return poll_until(&p, 1, deadline) > 0;
}

}  // namespace mproc::detail::posix
