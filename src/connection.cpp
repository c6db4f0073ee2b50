// Connection, Pipe and wait (API.md §9). Frame format, records and the reasons behind the limits:
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
#include <cstring>
#include <ctime>
#include <string>
#include <system_error>

#include "posix/fd.hpp"
#include "posix/signals.hpp"

namespace mproc {

namespace px = detail::posix;

namespace detail {

// How frames travel on an fd.
//   records: a SOCK_SEQPACKET socket (duplex Pipe). A frame is cut into records: the first holds the
//            header and at most kRecord bytes in all, the others at most the end's record size (up to
//            kMaxRecord); a read never returns more than one record, so the receiver can offer a large
//            buffer and get a whole small message in one system call without ever taking bytes of the
//            next message.
//   stream:  a SOCK_STREAM socket (adopted fd): the receiver reads exactly the header, then the body.
//   pipe:    a pipe or FIFO: as stream, plus the SIGPIPE guard on writes.
enum class Transport : unsigned char { records, stream, pipe };

// One end, shared by every copy of a Connection in this process. fd and broken are atomics only so that
// a sender and a receiver thread on one duplex end never race on them; the class does not promise more
// (see the header).
struct ConnectionState {
  ConnectionState(int f, bool r, bool w, Transport t, std::size_t rec) noexcept
      : fd(f), readable(r), writable(w), transport(t), body_record(rec) {}
  ConnectionState(int f, bool r, bool w, Transport t, std::size_t rec, std::size_t big, int normal) noexcept
      : fd(f), readable(r), writable(w), transport(t), body_record(rec), big_record(big), normal_sndbuf(normal) {}
  ~ConnectionState() { px::UniqueFd(fd.exchange(-1)); }  // closes it (never retried on EINTR)
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;

  std::atomic<int> fd;
  const bool readable;
  const bool writable;
  const Transport transport;
  // records only: the largest record after a frame's first one that this end sends with its send
  // buffer as it is (see record_size); big_record (0: none) with the buffer a Pipe() end raises for a
  // large message and then sets back to normal_sndbuf (the value to pass to SO_SNDBUF).
  const std::size_t body_record;
  const std::size_t big_record = 0;
  const int normal_sndbuf = 0;
  std::atomic<bool> broken{false};
  std::atomic<std::size_t> max_message{Connection::default_max_message_size};
};

}  // namespace detail

namespace {

using detail::ConnectionState;
using detail::Transport;

constexpr std::size_t kHeader = 8;
// Largest record a sender makes (header included) and the buffer a receiver offers for a frame's first
// record. 64 KiB fits the default AF_UNIX send buffer (net.core.wmem_default, 208 KiB) several times
// over; a sender that still meets EMSGSIZE halves it (receivers accept any smaller record).
constexpr std::size_t kRecord = std::size_t{64} << 10;
constexpr std::size_t kMinRecord = std::size_t{1} << 10;
// Largest record after a frame's first one. Fewer, larger records cost much less kernel time per byte
// on AF_UNIX (measured on the 2-core VM, 1 MiB messages: 64 KiB records about 250 µs of CPU per
// message for both sides, 256 KiB records about 145 µs, a pipe with a 1 MiB buffer about 175 µs;
// docs/design/connection.md, Performance). A receiver
// accepts any record up to this size; a sender uses at most a quarter of its send buffer per record
// (so several are in flight) and never less than kRecord.
constexpr std::size_t kMaxRecord = std::size_t{256} << 10;
// The send buffer a Pipe() end asks for while it sends a message longer than kLargeMessage: room for
// four kMaxRecord records. The kernel caps it at net.core.wmem_max (212992 by default, which gives
// records of 104 KiB). Only for large messages, and set back afterwards: a deep queue of small
// messages is slower (8-byte messages with a 1 MiB buffer: about 100 k msgs/s against 140 k/s with
// the default one, same CPU per message; the sender runs further ahead of the receiver).
constexpr int kPipeSendBuffer = 1 << 20;
constexpr std::size_t kLargeMessage = kMaxRecord;
// The body buffer starts at min(length, kFirstChunk) and grows (doubling, capped at the length) only
// when the bytes that arrived have (nearly) filled it: it never exceeds max(kFirstChunk,
// 2 × bytes received + kMaxRecord). A claimed length alone never allocates more than kFirstChunk.
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

[[noreturn]] void throw_broken(ConnectionState& s, const std::string& what) {
  s.broken.store(true, std::memory_order_relaxed);
  throw Error(what);
}

std::string too_long(std::uint64_t len, const char* which, std::size_t limit) {
  return "message too long: " + std::to_string(len) + " bytes, " + which + " is " + std::to_string(limit);
}

// ---- sending ------------------------------------------------------------------------------------


// One sendmsg/writev of iov[0..n), EINTR and EAGAIN handled. Bytes written, or -1 with errno.
ssize_t write_once(int fd, bool socket, iovec* iov, int n) {
  for (;;) {
    ssize_t w;
    if (socket) {
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = static_cast<std::size_t>(n);
      w = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    } else {
      w = ::writev(fd, iov, n);
    }
    if (w >= 0) return w;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    wait_for(fd, POLLOUT);
  }
}

// Stream or pipe: write all of iov[0..n), resuming after short writes. 0 or the errno of the failure.
int write_stream(int fd, bool socket, iovec* iov, int n, bool* wrote_any) {
  while (n > 0) {
    const ssize_t w = write_once(fd, socket, iov, n);
    if (w < 0) return errno;
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

// Records: header + the first part of the body in one record, the rest in records of at most `record`
// bytes. A SOCK_SEQPACKET send is all or nothing. 0 or the errno of the failure.
int write_records(int fd, unsigned char* header, std::span<const std::byte> body, std::size_t body_record,
                  bool* wrote_any) {
  std::size_t record = body_record;
  std::size_t off = 0;
  bool first = true;
  while (first || off < body.size()) {
    iovec iov[2];
    int n = 0;
    std::size_t part;
    if (first) {
      // The first record never exceeds kRecord: that is what the receiver offers for it.
      part = std::min(body.size(), std::min(record, kRecord) - kHeader);
      iov[n++] = {header, kHeader};
    } else {
      part = std::min(body.size() - off, record);
    }
    if (part > 0) iov[n++] = {const_cast<std::byte*>(body.data() + off), part};
    const std::size_t expect = (first ? kHeader : 0) + part;
    const ssize_t w = write_once(fd, true, iov, n);
    if (w < 0) {
      // A send buffer smaller than a record (a tiny net.core.wmem_default): use smaller records.
      if (errno == EMSGSIZE && record / 2 >= kMinRecord) {
        record /= 2;
        continue;
      }
      return errno;
    }
    if (static_cast<std::size_t>(w) != expect) return EIO;  // SEQPACKET sends are atomic; never seen
    *wrote_any = true;
    off += part;
    first = false;
  }
  return 0;
}

// ---- receiving ----------------------------------------------------------------------------------

// One read of up to n bytes: > 0 bytes read, 0 at EOF. ECONNRESET: an AF_UNIX peer closed with data of
// ours unread. Linux reports it once (it is the socket's pending error, cleared by the report), and
// on a seqpacket socket BEFORE the records the peer sent earlier, which are still queued: so read
// again; a second ECONNRESET in a row counts as EOF.
// EAGAIN on an fd made non-blocking by someone: wait, then read again. A record larger than n (only a
// sender that does not follow the protocol makes one) breaks the connection. Other errors throw.
std::size_t read_once(ConnectionState& s, int fd, void* buf, std::size_t n) {
  bool reset_seen = false;
  for (;;) {
    ssize_t r;
    bool truncated = false;
    if (s.transport == Transport::records) {
      iovec iov{buf, n};
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      r = ::recvmsg(fd, &m, 0);
      truncated = r >= 0 && (m.msg_flags & MSG_TRUNC) != 0;
    } else {
      r = px::read_some(fd, buf, n);
    }
    if (truncated) throw_broken(s, "recv_bytes: malformed frame (a record longer than its message)");
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) {
      if (reset_seen) return 0;
      reset_seen = true;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_for(fd, POLLIN);
      continue;
    }
    px::throw_errno("recv_bytes");
  }
}

// Where a frame's first record lands on a records transport: header + up to kRecord - 8 body bytes.
// One buffer per thread, so a small message costs no allocation beyond its own vector.
std::byte* first_record_buffer() {
  thread_local std::unique_ptr<std::byte[]> buf;
  // Not zero-filled: recvmsg writes what arrives, and only those bytes are read. Zeroing 64 KiB touched
  // 16 fresh pages, a page fault each (10-25 µs on a VM), in every thread and every forked worker that
  // receives for the first time: ~45 faults of a Pool(2)'s creation and first map (the pool thread and
  // both workers), about 0.5 ms. Untouched pages of the buffer are never faulted in.
  if (!buf) buf = std::make_unique_for_overwrite<std::byte[]>(kRecord);
  return buf.get();
}

// SO_SNDBUF as the kernel reports it (the doubled value it accounts with), or 0.
int send_buffer(int fd) noexcept {
  int buf = 0;
  socklen_t len = sizeof buf;
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, &len) != 0) return 0;
  return buf;
}
// The records an end sends with this send buffer: a quarter of it (a record longer than the buffer fails
// with EMSGSIZE; a quarter keeps several in flight), in kRecord .. kMaxRecord, a multiple of 4 KiB.
std::size_t record_for(int sndbuf) noexcept {
  if (sndbuf <= 0) return kRecord;
  const std::size_t quarter = (static_cast<std::size_t>(sndbuf) / 4) & ~std::size_t{4095};
  return std::clamp(quarter, kRecord, kMaxRecord);
}
// body_record of a new end. Its socket's options are only read: an adopted fd keeps its own.
std::size_t record_size(int fd, Transport t) noexcept {
  return t == Transport::records ? record_for(send_buffer(fd)) : kRecord;
}

// Raises a Pipe() end's send buffer for one large message and sets it back (also on an exception).
// The buffer belongs to the socket, so another process sharing the end sees it raised meanwhile: that
// only lets more of its own records queue. Failures leave the buffer as it was (normal records).
class LargeSendBuffer {
 public:
  LargeSendBuffer(const ConnectionState& s, int fd, std::size_t size) noexcept : fd_(fd), normal_(s.normal_sndbuf) {
    if (s.big_record > s.body_record && size > kLargeMessage &&
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kPipeSendBuffer, sizeof kPipeSendBuffer) == 0) {
      record_ = s.big_record;
      raised_ = true;
    } else {
      record_ = s.body_record;
    }
  }
  ~LargeSendBuffer() {
    if (raised_) (void)::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &normal_, sizeof normal_);
  }
  LargeSendBuffer(const LargeSendBuffer&) = delete;
  LargeSendBuffer& operator=(const LargeSendBuffer&) = delete;
  std::size_t record() const noexcept { return record_; }

 private:
  int fd_;
  int normal_;
  std::size_t record_;
  bool raised_ = false;
};

}  // namespace

// ---- Connection ---------------------------------------------------------------------------------

Connection::Connection() noexcept = default;

Connection::Connection(std::shared_ptr<detail::ConnectionState> st) noexcept : st_(std::move(st)) {}

Connection::Connection(int fd, bool readable, bool writable) {
  if (fd < 0) throw UsageError("Connection: negative fd");
  if (!readable && !writable) throw UsageError("Connection: neither readable nor writable");
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) px::throw_errno("Connection: fstat");
  Transport t = Transport::pipe;
  if (S_ISSOCK(sb.st_mode)) {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) px::throw_errno("Connection: getsockopt");
    if (type == SOCK_SEQPACKET)
      t = Transport::records;
    else if (type == SOCK_STREAM)
      t = Transport::stream;
    else
      throw UsageError("Connection: the socket is neither SOCK_STREAM nor SOCK_SEQPACKET");
  }
  st_ = std::make_shared<detail::ConnectionState>(fd, readable, writable, t, record_size(fd, t));
}

namespace {

// The state for an I/O call, or the right exception.
ConnectionState& usable(const std::shared_ptr<ConnectionState>& st, bool need_read, const char* what) {
  if (!st || st->fd.load(std::memory_order_relaxed) < 0)
    throw UsageError(std::string(what) + ": the connection is closed");
  if (need_read && !st->readable) throw UsageError(std::string(what) + ": the connection is write-only");
  if (!need_read && !st->writable) throw UsageError(std::string(what) + ": the connection is read-only");
  if (st->broken.load(std::memory_order_relaxed))
    throw Error(std::string(what) +
                ": the connection is broken (an earlier message was too long or malformed, or a write failed "
                "half-way)");
  return *st;
}

}  // namespace

void Connection::send_bytes(std::span<const std::byte> bytes) {
  ConnectionState& s = usable(st_, false, "send_bytes");
  const std::size_t limit = s.max_message.load(std::memory_order_relaxed);
  if (bytes.size() > limit) throw Error("send_bytes: " + too_long(bytes.size(), "max_message_size", limit));

  unsigned char header[kHeader];
  put_le64(header, bytes.size());
  const int fd = s.fd.load(std::memory_order_relaxed);
  bool wrote_any = false;
  int err;
  if (s.transport == Transport::records) {
    LargeSendBuffer buffer(s, fd, bytes.size());
    err = write_records(fd, header, bytes, buffer.record(), &wrote_any);
    // A SEQPACKET peer that closed with unread data reports ECONNRESET (once) where a stream says EPIPE;
    // both mean the reader is gone.
    if (err == ECONNRESET) err = EPIPE;
  } else {
    iovec iov[2] = {{header, kHeader}, {const_cast<std::byte*>(bytes.data()), bytes.size()}};
    const int n = bytes.empty() ? 1 : 2;
    if (s.transport == Transport::stream) {
      err = write_stream(fd, true, iov, n, &wrote_any);
      if (err == ECONNRESET) err = EPIPE;
    } else {
      px::SigpipeGuard guard;
      err = write_stream(fd, false, iov, n, &wrote_any);
      if (err == EPIPE) guard.epipe();
    }
  }
  if (err != 0) {
    // Part of a frame is in the stream: the reader would take the next frame's bytes for this body.
    if (wrote_any) s.broken.store(true, std::memory_order_relaxed);
    px::throw_errno(err, "send_bytes");
  }
}

std::vector<std::byte> Connection::recv_bytes(std::size_t maxlength) {
  ConnectionState& s = usable(st_, true, "recv_bytes");
  const int fd = s.fd.load(std::memory_order_relaxed);
  const bool records = s.transport == Transport::records;

  // The header. On a stream exactly 8 bytes are read, never a byte of what follows. On records the
  // first record (header and, for a small message, the whole body) arrives in one read.
  unsigned char header[kHeader];
  const std::byte* early = nullptr;  // body bytes that came with the header (records only)
  std::size_t early_n = 0;
  {
    std::byte* first = records ? first_record_buffer() : reinterpret_cast<std::byte*>(header);
    const std::size_t room = records ? kRecord : kHeader;
    std::size_t got = 0;
    while (got < kHeader) {
      const std::size_t r = read_once(s, fd, first + got, room - got);
      if (r == 0) {
        if (got == 0) throw EOFError("recv_bytes: the other end is closed");
        throw EOFError("recv_bytes: the other end closed in the middle of a message (" + std::to_string(got) +
                       " of 8 length bytes)");
      }
      got += r;
    }
    if (records) {
      std::memcpy(header, first, kHeader);
      early = first + kHeader;
      early_n = got - kHeader;
    }
  }

  // Both limits are checked before anything is allocated. The rest of the frame stays unread, so the
  // stream is out of step from here on: the connection is broken.
  const std::uint64_t len = get_le64(header);
  const std::size_t limit = s.max_message.load(std::memory_order_relaxed);
  if (len > limit) throw_broken(s, "recv_bytes: " + too_long(len, "max_message_size", limit));
  if (len > maxlength) throw_broken(s, "recv_bytes: " + too_long(len, "maxlength", maxlength));
  const auto total = static_cast<std::size_t>(len);
  if (early_n > total)
    throw_broken(s, "recv_bytes: malformed frame (a record holds " + std::to_string(early_n - total) +
                        " bytes past the end of its message)");

  // Grow only as bytes arrive (see kFirstChunk): a peer that claims 1 GiB and sends 10 bytes costs 1 MiB.
  std::vector<std::byte> body(std::min(total, kFirstChunk));
  if (early_n > 0) std::memcpy(body.data(), early, early_n);
  std::size_t have = early_n;
  while (have < total) {
    // A record must fit whole where it is read (or the kernel would cut it): keep room for one.
    const std::size_t need = records ? std::min(kMaxRecord, total - have) : 1;
    if (body.size() - have < need) body.resize(std::min(total, std::max(body.size() * 2, have + need)));
    const std::size_t r = read_once(s, fd, body.data() + have, std::min(body.size(), total) - have);
    if (r == 0)
      throw EOFError("recv_bytes: the other end closed in the middle of a message (" + std::to_string(have) +
                     " of " + std::to_string(total) + " bytes)");
    have += r;
  }
  return body;
}

bool Connection::poll(std::chrono::nanoseconds timeout) {
  ConnectionState& s = usable(st_, true, "poll");
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

// ---- Pipe and wait ------------------------------------------------------------------------------

namespace detail {
struct ConnectionAccess {
  // Hand fd over to a new Connection; fd stays owned by the caller's UniqueFd until that succeeded.
  static Connection make(px::UniqueFd& fd, bool readable, bool writable, Transport t) {
    auto st = std::make_shared<ConnectionState>(fd.get(), readable, writable, t, record_size(fd.get(), t));
    fd.release();
    return Connection(std::move(st));
  }
  // A Pipe() end: also find the records its raised send buffer allows (LargeSendBuffer), by raising it
  // once and setting it back (SO_SNDBUF takes half of what it reports: the kernel doubles it).
  static Connection make_duplex(px::UniqueFd& fd) {
    const int normal = send_buffer(fd.get());
    std::size_t big = 0;
    if (normal > 0 && ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &kPipeSendBuffer, sizeof kPipeSendBuffer) == 0) {
      big = record_for(send_buffer(fd.get()));
      const int half = normal / 2;
      if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &half, sizeof half) != 0) big = 0;  // never seen
    }
    auto st = std::make_shared<ConnectionState>(fd.get(), true, true, Transport::records, record_for(normal), big,
                                                normal / 2);
    fd.release();
    return Connection(std::move(st));
  }
};
}  // namespace detail

std::pair<Connection, Connection> Pipe(bool duplex) {
  using detail::ConnectionAccess;
  if (duplex) {
    int sv[2];
    // SOCK_SEQPACKET rather than Python's SOCK_STREAM: a read returns at most one record, so a small
    // message arrives whole in one system call (see Transport). The byte format is the same.
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) px::throw_errno("Pipe: socketpair");
    px::UniqueFd a(sv[0]), b(sv[1]);
    Connection ca = ConnectionAccess::make_duplex(a);
    Connection cb = ConnectionAccess::make_duplex(b);
    return {std::move(ca), std::move(cb)};
  }
  px::Pipe p = px::make_pipe();
  Connection reader = ConnectionAccess::make(p.read, true, false, Transport::pipe);
  Connection writer = ConnectionAccess::make(p.write, false, true, Transport::pipe);
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
