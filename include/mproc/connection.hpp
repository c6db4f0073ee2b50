// mproc/connection.hpp — Python's multiprocessing.Pipe and Connection for C++, and mproc::wait.
//
// Pipe() returns the two ends of a channel that carries whole messages between processes:
//
//     auto [parent_end, child_end] = mproc::Pipe();          // duplex: a socketpair
//     mproc::Process p([](mproc::Connection c) { c.send(c.recv<int>() + 1); }, child_end);
//     p.start();
//     child_end.close();                                      // the parent does not use this end
//     parent_end.send(41);
//     int answer = parent_end.recv<int>();                     // 42
//     p.join();
//
// Messages: `send<T>`/`recv<T>` carry any value the codec (mproc/codec.hpp) can encode; send_bytes/
// recv_bytes carry raw bytes. Each message travels as one frame, a 64-bit little-endian length then the
// body, so message boundaries are kept (docs/design/connection.md). A message longer than
// max_message_size() (default 1 GiB) is refused by the sender and by the receiver; the receiver checks the
// length before it allocates anything and grows its buffer only as bytes arrive, so a malicious or
// corrupt length never makes it allocate the claimed size.
//
// Handles: a Connection is a cheap handle; copies refer to the same end (and the same fd). A Connection
// created before Process::start() is usable in the child: pass it by value as a target argument (fork
// duplicates the fd). close() closes this process's fd for every copy in this process; other processes
// keep theirs. The end is also closed when the last copy in this process is destroyed.
//
// The classic pipe gotcha: the reader sees EOF (EOFError) only once *every* copy of the other end is
// closed, in every process. After starting the child, the parent must close the end it gave away
// (child_end.close() above), or it never sees EOF when the child exits. Likewise every child forked
// while an end is open holds a copy of it until it closes it or exits, the parent's own end included: a
// child that waits for EOF from the parent must close its inherited copy of the parent's end (pass it
// in and close() it), or end the exchange with a message instead, as in Python.
//
// Blocking: send*/recv* block until the whole message is written / read (no timeout: call poll(timeout)
// first to wait with one). poll(timeout) and mproc::wait(fds, timeout) block at most for the timeout, on
// the monotonic clock. Every blocking call restarts on EINTR and keeps its deadline.
//
// Signals: writing to an end whose reader is gone throws std::system_error(EPIPE); it never raises
// SIGPIPE (MSG_NOSIGNAL on sockets; on one-way pipes SIGPIPE is blocked in the calling thread around the
// write and a SIGPIPE the write raised is consumed).
//
// Threads: like Python's Connection, an end is not meant for concurrent use in the same direction: two
// threads sending at once (or receiving at once) on the same end must hold a lock, or their frames may
// interleave. One thread sending while another receives on a duplex end is fine. close() must not race
// with a call in progress on the same end. Likewise, two *processes* sending on the same end must take a
// lock (an mproc Lock), unless every message is small: up to 65528 bytes on a duplex end (one
// SOCK_SEQPACKET record) or 4088 bytes on a one-way pipe (PIPE_BUF with the 8-byte length) is written
// atomically. Two processes receiving from one end always need a lock.
//
// Fork: every fd is O_CLOEXEC (socketpair with SOCK_CLOEXEC, pipe2), so nothing leaks into programs a
// child execs. A Connection holds no lock, so forking while another thread uses it is safe; the child's
// copy starts where the parent's stream was (unread bytes are shared, not duplicated).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"
#include "mproc/export.hpp"

namespace mproc {

namespace detail {
struct ConnectionState;
struct ConnectionAccess;
}

/// One end of a Pipe() (or of an adopted fd): a handle that sends and receives whole messages. See the
/// top of this header for copies, blocking, signals, threads and fork.
class MPROC_API Connection {
 public:
  /// The default maximum message size: 1 GiB (the body, without the 8-byte length).
  static constexpr std::size_t default_max_message_size = std::size_t{1} << 30;

  /// An empty, closed Connection (every I/O call throws UsageError). Assign a real one to it.
  Connection() noexcept;

  /// Adopt an open fd (a connected SOCK_STREAM or SOCK_SEQPACKET socket, or one end of a pipe or FIFO):
  /// the Connection owns it from now on and closes it. readable/writable give the direction(s) it may be
  /// used in. For frames to line up, the other end must be a Connection too. UsageError if fd < 0, if
  /// neither direction is given or for another socket type; std::system_error if fd is not open. On an
  /// exception the fd stays the caller's.
  explicit Connection(int fd, bool readable = true, bool writable = true);

  /// Another handle to the same end (the same fd).
  Connection(const Connection&) = default;
  /// Refer to the other's end; the end this referred to is closed if this was its last copy here.
  Connection& operator=(const Connection&) = default;
  /// Takes over the other's end; the other is left empty (closed).
  Connection(Connection&&) noexcept = default;
  /// As copy-assignment, leaving the other empty (closed).
  Connection& operator=(Connection&&) noexcept = default;
  /// Closes the fd when this is the last copy in this process. Never throws.
  ~Connection() = default;

  /// Encode obj with the codec and send it as one message. Throws what send_bytes throws (and what
  /// encode throws).
  template <class T>
  void send(const T& obj) {
    const std::vector<std::byte> bytes = mproc::encode(obj);
    send_bytes(bytes);
  }

  /// Receive one message and decode it as T. Throws what recv_bytes throws; CodecError if the message
  /// does not decode as T (the message is consumed and the connection stays usable).
  template <class T>
  T recv() {
    const std::vector<std::byte> bytes = recv_bytes();
    return mproc::decode<T>(std::span<const std::byte>(bytes));
  }

  /// Send bytes as one message; blocks until all of it is written (the peer may have to read first).
  /// Throws UsageError if closed or not writable; mproc::Error if the connection is broken (see
  /// recv_bytes) or bytes.size() > max_message_size() (nothing is sent then, and the connection stays
  /// usable); std::system_error on an OS failure, EPIPE when the reading end is closed (never SIGPIPE).
  /// If a write fails half-way through a message the connection is broken.
  void send_bytes(std::span<const std::byte> bytes);

  /// Receive one whole message; blocks until it has arrived. Throws:
  ///   * EOFError when the other end is closed (every copy, in every process) and nothing is left, and
  ///     also when it closed in the middle of a message (a truncated frame: what arrived is discarded);
  ///   * mproc::Error ("message too long") when the message is longer than maxlength or than
  ///     max_message_size(); nothing is allocated for it, and the connection is then *broken*: the rest of
  ///     the message is not read, so every later send/recv/poll throws mproc::Error (Python leaves its
  ///     Connection unusable here too). close() still works. Choose maxlength as a sanity limit, not as
  ///     a way to skip messages;
  ///   * UsageError if closed or not readable; std::system_error on an OS failure.
  std::vector<std::byte> recv_bytes(std::size_t maxlength = SIZE_MAX);

  /// True if something can be received without blocking: a message (or the start of one) or EOF.
  /// Waits at most timeout (default 0: just look; nanoseconds::max(): forever; negative: 0).
  /// Throws UsageError if closed or not readable; mproc::Error if broken.
  bool poll(std::chrono::nanoseconds timeout = {});

  /// Close this process's fd, for every copy in this process. A second close() does nothing. Never
  /// throws. Afterwards every call but closed()/readable()/writable()/max_message_size() throws UsageError.
  void close() noexcept;
  /// True after close(), and for an empty Connection.
  bool closed() const noexcept;
  /// The direction(s) of this end: both for a duplex Pipe; reader / writer for a one-way Pipe.
  bool readable() const noexcept;
  /// See readable(): true if this end sends.
  bool writable() const noexcept;
  /// The fd, for poll/epoll/mproc::wait (do not read, write or close it yourself). UsageError if closed.
  int fileno() const;

  /// The largest message body this end sends or accepts, shared by all copies in this process
  /// (default_max_message_size unless changed). Both ends should agree; the receiver's limit is the one
  /// that protects it. UsageError on an empty Connection.
  std::size_t max_message_size() const;
  /// Set max_message_size() to n, for every copy in this process; returns *this. UsageError on an empty
  /// Connection.
  Connection& max_message_size(std::size_t n);

 private:
  friend struct detail::ConnectionAccess;
  explicit Connection(std::shared_ptr<detail::ConnectionState> st) noexcept;
  std::shared_ptr<detail::ConnectionState> st_;
};

/// A pair of connected ends. duplex (default): (a, b), each readable and writable (an AF_UNIX
/// SOCK_SEQPACKET socketpair). Otherwise (reader, writer): the first end only receives, the second only
/// sends (a pipe).
/// Both fds are O_CLOEXEC. std::system_error if the OS refuses (EMFILE, ...).
MPROC_API std::pair<Connection, Connection> Pipe(bool duplex = true);

/// Wait until at least one of fds is ready, or timeout passes (nullopt or nanoseconds::max(): forever).
/// Ready means readable, at EOF, or in error (POLLIN, POLLHUP, POLLERR): a Connection::fileno() with a
/// message or EOF, a Process::sentinel() whose child ended, any other fd. Returns the indices (into fds)
/// of the ready ones in increasing order; empty on timeout. With no fds it just waits for the timeout.
/// Restarts on EINTR, keeping the deadline (monotonic clock). Throws UsageError for a negative fd;
/// std::system_error with EBADF for an fd that is not open, or if poll(2) fails.
MPROC_API std::vector<std::size_t> wait(std::span<const int> fds,
                                        std::optional<std::chrono::nanoseconds> timeout = {});
/// The same for a braced list: mproc::wait({conn.fileno(), p.sentinel()}, 1s).
inline std::vector<std::size_t> wait(std::initializer_list<int> fds,
                                     std::optional<std::chrono::nanoseconds> timeout = {}) {
  return wait(std::span<const int>(fds.begin(), fds.size()), timeout);
}

}  // namespace mproc
