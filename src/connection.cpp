// Connection, Pipe and wait (API.md §9). Frame format and the reasons behind the limits:
// docs/design/connection.md.
#include "mproc/connection.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <string>
#include <system_error>

#include "posix/fd.hpp"

namespace mproc {

namespace px = detail::posix;

namespace detail {

// One end, shared by every copy of a Connection in this process. fd and broken are atomics only so that
// a sender and a receiver thread on one duplex end never race on them; the class does not promise more
// (see the header).
struct ConnectionState {
  ConnectionState(int f, bool r, bool w, bool sock) noexcept : fd(f), readable(r), writable(w), socket(sock) {}
  ~ConnectionState() { px::UniqueFd(fd.exchange(-1)); }  // closes it (never retried on EINTR)
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;

  std::atomic<int> fd;
  const bool readable;
  const bool writable;
  const bool socket;  // sendmsg(MSG_NOSIGNAL) works; otherwise a pipe (SIGPIPE guard)
  std::atomic<bool> broken{false};
  std::atomic<std::size_t> max_message{Connection::default_max_message_size};
};

}  // namespace detail

namespace {

constexpr std::size_t kHeader = 8;
// The receive buffer starts at min(length, kFirstChunk) and doubles (capped at the length) only when the
// bytes that arrived have filled it: it never exceeds max(kFirstChunk, 2 × bytes received).
constexpr std::size_t kFirstChunk = std::size_t{1} << 20;

void put_le64(unsigned char* out, std::uint64_t v) noexcept {
  for (std::size_t i = 0; i < kHeader; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint64_t get_le64(const unsigned char* in) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < kHeader; ++i) v |= std::uint64_t{in[i]} << (8 * i);
  return v;
}

// Block until fd is ready for events (after EAGAIN on an fd someone made non-blocking).
void wait_for(int fd, short events) {
  pollfd p{fd, events, 0};
  px::poll_until(&p, 1, px::Deadline(std::nullopt));
}

// While alive, SIGPIPE is blocked in the calling thread; a SIGPIPE raised meanwhile by our write is
// consumed before the old mask comes back, so it is never delivered. A SIGPIPE that was already pending
// before (raised by someone else, while the program had it blocked) is left alone. This is the usual
// way to write to a pipe without SIGPIPE when the process disposition may not be changed (a library
// must not touch it): signal(7), and e.g. curl's sigpipe_ignore, git's, libressl's.
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    if (::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) was_pending_ = true;
    ::pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_);
  }
  ~SigpipeGuard() {
    const int saved = errno;
    if (raised_ && !was_pending_) {
      // SIGPIPE for a write(2) is directed at the writing thread, so this thread can take it.
      const timespec zero{0, 0};
      while (::sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved;
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;
  void epipe() noexcept { raised_ = true; }

 private:
  sigset_t pipe_set_;
  sigset_t old_;
  bool was_pending_ = false;
  bool raised_ = false;
};

// Write the whole of iov[0..n) (header, body). Returns 0, or the errno of the failure; *wrote_any says
// whether part of the frame went out before it.
int write_frame(int fd, bool socket, iovec* iov, int n, bool* wrote_any) {
  *wrote_any = false;
  while (n > 0) {
    ssize_t w;
    if (socket) {
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = static_cast<std::size_t>(n);
      w = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    } else {
      w = ::writev(fd, iov, n);
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_for(fd, POLLOUT);
        continue;
      }
      return errno;
    }
    *wrote_any = true;
    auto left = static_cast<std::size_t>(w);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

// read(2) of up to n bytes: > 0 bytes read, 0 at EOF. ECONNRESET (an AF_UNIX peer closed with unread data
// in its own queue) is EOF for us: Linux reports it once, after our queue is drained, then reads 0.
// EAGAIN on an fd made non-blocking by someone: wait, then read again. Other errors throw.
std::size_t read_some_or_eof(int fd, void* buf, std::size_t n) {
  for (;;) {
    const ssize_t r = px::read_some(fd, buf, n);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno == ECONNRESET) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_for(fd, POLLIN);
      continue;
    }
    px::throw_errno("recv_bytes");
  }
}

std::string too_long(std::uint64_t len, const char* which, std::size_t limit) {
  return "message too long: " + std::to_string(len) + " bytes, " + which + " is " + std::to_string(limit);
}

}  // namespace

Connection::Connection() noexcept = default;

Connection::Connection(int fd, bool readable, bool writable) {
  if (fd < 0) throw UsageError("Connection: negative fd");
  if (!readable && !writable) throw UsageError("Connection: neither readable nor writable");
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) px::throw_errno("Connection: fstat");
  st_ = std::make_shared<detail::ConnectionState>(fd, readable, writable, S_ISSOCK(sb.st_mode));
}

namespace {

// The state for an I/O call, or the right exception.
detail::ConnectionState& usable(const std::shared_ptr<detail::ConnectionState>& st, bool need_read,
                                const char* what) {
  if (!st || st->fd.load(std::memory_order_relaxed) < 0)
    throw UsageError(std::string(what) + ": the connection is closed");
  if (need_read && !st->readable) throw UsageError(std::string(what) + ": the connection is write-only");
  if (!need_read && !st->writable) throw UsageError(std::string(what) + ": the connection is read-only");
  if (st->broken.load(std::memory_order_relaxed))
    throw Error(std::string(what) +
                ": the connection is broken (an earlier message was too long or a write failed half-way)");
  return *st;
}

}  // namespace

void Connection::send_bytes(std::span<const std::byte> bytes) {
  detail::ConnectionState& s = usable(st_, false, "send_bytes");
  const std::size_t limit = s.max_message.load(std::memory_order_relaxed);
  if (bytes.size() > limit) throw Error("send_bytes: " + too_long(bytes.size(), "max_message_size", limit));

  unsigned char header[kHeader];
  put_le64(header, bytes.size());
  iovec iov[2] = {{header, kHeader}, {const_cast<std::byte*>(bytes.data()), bytes.size()}};
  const int n = bytes.empty() ? 1 : 2;
  const int fd = s.fd.load(std::memory_order_relaxed);
  bool wrote_any = false;
  int err;
  if (s.socket) {
    err = write_frame(fd, true, iov, n, &wrote_any);
  } else {
    SigpipeGuard guard;
    err = write_frame(fd, false, iov, n, &wrote_any);
    if (err == EPIPE) guard.epipe();
  }
  if (err != 0) {
    // Half a frame in the stream: the reader would take the next frame's bytes for this body.
    if (wrote_any) s.broken.store(true, std::memory_order_relaxed);
    px::throw_errno(err, "send_bytes");
  }
}

std::vector<std::byte> Connection::recv_bytes(std::size_t maxlength) {
  detail::ConnectionState& s = usable(st_, true, "recv_bytes");
  const int fd = s.fd.load(std::memory_order_relaxed);

  unsigned char header[kHeader];
  std::size_t got = 0;
  while (got < kHeader) {
    const std::size_t r = read_some_or_eof(fd, header + got, kHeader - got);
    if (r == 0) {
      if (got == 0) throw EOFError("recv_bytes: the other end is closed");
      throw EOFError("recv_bytes: the other end closed in the middle of a message (" + std::to_string(got) +
                     " of 8 length bytes)");
    }
    got += r;
  }

  // Both limits are checked before anything is allocated. The rest of the frame stays unread, so the
  // stream is out of step from here on: the connection is broken.
  const std::uint64_t len = get_le64(header);
  const std::size_t limit = s.max_message.load(std::memory_order_relaxed);
  if (len > limit) {
    s.broken.store(true, std::memory_order_relaxed);
    throw Error("recv_bytes: " + too_long(len, "max_message_size", limit));
  }
  if (len > maxlength) {
    s.broken.store(true, std::memory_order_relaxed);
    throw Error("recv_bytes: " + too_long(len, "maxlength", maxlength));
  }

  // Grow only as bytes arrive (see kFirstChunk): a peer that claims 1 GiB and sends 10 bytes costs 1 MiB.
  const auto total = static_cast<std::size_t>(len);
  std::vector<std::byte> body(std::min(total, kFirstChunk));
  std::size_t have = 0;
  while (have < total) {
    if (have == body.size()) body.resize(std::min(total, body.size() * 2));
    const std::size_t r = read_some_or_eof(fd, body.data() + have, body.size() - have);
    if (r == 0)
      throw EOFError("recv_bytes: the other end closed in the middle of a message (" + std::to_string(have) +
                     " of " + std::to_string(total) + " bytes)");
    have += r;
  }
  return body;
}

bool Connection::poll(std::chrono::nanoseconds timeout) {
  detail::ConnectionState& s = usable(st_, true, "poll");
  if (timeout < std::chrono::nanoseconds::zero()) timeout = std::chrono::nanoseconds::zero();
  // nanoseconds::max() saturates to "no deadline" inside Deadline.
  return px::wait_readable(s.fd.load(std::memory_order_relaxed), px::Deadline(timeout));
}

void Connection::close() noexcept {
  if (st_) px::UniqueFd(st_->fd.exchange(-1));  // closes it; -1 is a no-op
}

bool Connection::closed() const noexcept { return !st_ || st_->fd.load(std::memory_order_relaxed) < 0; }
bool Connection::readable() const noexcept { return st_ && st_->readable; }
bool Connection::writable() const noexcept { return st_ && st_->writable; }

int Connection::fileno() const {
  const int fd = st_ ? st_->fd.load(std::memory_order_relaxed) : -1;
  if (fd < 0) throw UsageError("fileno: the connection is closed");
  return fd;
}

std::size_t Connection::max_message_size() const {
  if (!st_) throw UsageError("max_message_size: empty Connection");
  return st_->max_message.load(std::memory_order_relaxed);
}

Connection& Connection::max_message_size(std::size_t n) {
  if (!st_) throw UsageError("max_message_size: empty Connection");
  st_->max_message.store(n, std::memory_order_relaxed);
  return *this;
}

namespace detail {
struct ConnectionAccess {
  // Hand fd over to a new Connection; fd stays owned by the caller's UniqueFd until that succeeded.
  static Connection make(px::UniqueFd& fd, bool readable, bool writable, bool socket) {
    auto st = std::make_shared<ConnectionState>(fd.get(), readable, writable, socket);
    fd.release();
    return Connection(std::move(st));
  }
};
}  // namespace detail

Connection::Connection(std::shared_ptr<detail::ConnectionState> st) noexcept : st_(std::move(st)) {}

std::pair<Connection, Connection> Pipe(bool duplex) {
  using detail::ConnectionAccess;
  if (duplex) {
    int sv[2];
    // SOCK_STREAM, as Python's duplex Pipe: no per-message limit of the kernel's (SOCK_SEQPACKET messages
    // are bounded by the socket buffer); our framing keeps the boundaries.
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) px::throw_errno("Pipe: socketpair");
    px::UniqueFd a(sv[0]), b(sv[1]);
    Connection ca = ConnectionAccess::make(a, true, true, true);
    Connection cb = ConnectionAccess::make(b, true, true, true);
    return {std::move(ca), std::move(cb)};
  }
  px::Pipe p = px::make_pipe();
  Connection reader = ConnectionAccess::make(p.read, true, false, false);
  Connection writer = ConnectionAccess::make(p.write, false, true, false);
  return {std::move(reader), std::move(writer)};
}

std::vector<std::size_t> wait(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<pollfd> p(fds.size());
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] < 0) throw UsageError("wait: negative fd at index " + std::to_string(i));
    p[i] = pollfd{fds[i], POLLIN, 0};
  }
  if (timeout && *timeout < std::chrono::nanoseconds::zero()) timeout = std::chrono::nanoseconds::zero();
  std::vector<std::size_t> ready;
  if (px::poll_until(p.data(), p.size(), px::Deadline(timeout)) == 0) return ready;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i].revents & POLLNVAL)
      throw std::system_error(EBADF, std::system_category(), "wait: fd " + std::to_string(fds[i]) + " is not open");
    if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) ready.push_back(i);
  }
  return ready;
}

}  // namespace mproc
