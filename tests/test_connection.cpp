// tests/test_connection.cpp — Pipe, Connection and mproc::wait (API.md §9): values and bytes between
// real processes, large messages, message boundaries, poll timing, EOF, maxlength, one-way pipes, wait
// over connections and sentinels, malformed frames (under an address-space limit), EPIPE without SIGPIPE.
//
// Children are synchronized through the connections themselves (a child blocks in recv until the parent
// sends), never by sleeping. Children never use Catch macros: they throw, which gives exit code 1 and the
// message on stderr, and the parent checks exitcode() == 0.
#include "catch.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

using mproc::Connection;
using mproc::EOFError;
using mproc::Process;
using mproc::UsageError;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace conn_test {

// A user struct with a codec declared by MPROC_CODEC.
struct Order {
  std::string item;
  int quantity = 0;
  std::vector<double> prices;
  bool operator==(const Order&) const = default;
};

// A trivially copyable aggregate without pointers: built into the codec.
struct Point {
  std::int32_t x;
  double y;
  bool operator==(const Point&) const = default;
};

}  // namespace conn_test

MPROC_CODEC(conn_test::Order, item, quantity, prices);

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return out;
}

std::string string_of(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Raw frame bytes: 8-byte little-endian length, then body.
std::string raw_header(std::uint64_t len) {
  std::string h(8, '\0');
  for (int i = 0; i < 8; ++i) h[static_cast<std::size_t>(i)] = static_cast<char>(len >> (8 * i));
  return h;
}

// The exception's dynamic type is exactly mproc::Error (not EOFError or another child of it).
template <class F>
bool throws_plain_error(F&& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const EOFError&) {
    return false;
  } catch (const mproc::CodecError&) {
    return false;
  } catch (const mproc::Error& e) {
    if (what) *what = e.what();
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("child check failed: ") + what);
}

bool cloexec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Values, bytes and boundaries between processes
// ---------------------------------------------------------------------------------------------------

TEST_CASE("connection: Pipe carries a user struct, a trivially copyable aggregate and a string between processes",
          "[connection]") {
  auto [here, there] = mproc::Pipe();
  Process p(
      [](Connection c) {
        auto order = c.recv<conn_test::Order>();
        auto point = c.recv<conn_test::Point>();
        auto text = c.recv<std::string>();
        order.quantity *= 2;
        order.prices.push_back(9.5);
        c.send(order);
        c.send(conn_test::Point{point.x + 1, point.y * 2});
        c.send(text + " from pid " + std::to_string(::getpid()));
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();  // the parent does not use the child's end

  here.send(conn_test::Order{"widget", 3, {1.25, 2.5}});
  here.send(conn_test::Point{41, 0.75});
  here.send(std::string("hello"));
  CHECK(here.recv<conn_test::Order>() == conn_test::Order{"widget", 6, {1.25, 2.5, 9.5}});
  CHECK(here.recv<conn_test::Point>() == conn_test::Point{42, 1.5});
  CHECK(here.recv<std::string>() == "hello from pid " + std::to_string(*p.pid()));
  p.join();
  CHECK(p.exitcode() == 0);
  CHECK_THROWS_AS(here.recv<std::string>(), EOFError);
}

TEST_CASE("connection: a 16 MiB message goes parent -> child -> parent byte-identical", "[connection]") {
  constexpr std::size_t kSize = std::size_t{16} << 20;
  const auto data = pattern(kSize, 16);
  auto [here, there] = mproc::Pipe();
  Process p(
      [](Connection c) {
        auto b = c.recv_bytes();
        c.send_bytes(b);  // bytes
        c.send(b);        // and the same through the codec
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();

  here.send_bytes(data);
  const auto back = here.recv_bytes();
  REQUIRE(back.size() == kSize);
  CHECK(back == data);
  const auto back2 = here.recv<std::vector<std::byte>>();
  CHECK(back2 == data);
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("connection: message boundaries are kept: several sends arrive as as many recvs", "[connection]") {
  const std::vector<std::size_t> sizes{0, 1, 7, 8, 9, 4095, 4096, 65537, 300000, 0, 3};
  auto [here, there] = mproc::Pipe();
  Process p(
      [sizes](Connection c) {
        // Sent back to back, before the parent reads anything (the largest one blocks until it does).
        for (std::size_t i = 0; i < sizes.size(); ++i) c.send_bytes(pattern(sizes[i], i));
        // Then the other direction: five small messages, already queued by the parent.
        std::string joined;
        for (int i = 0; i < 5; ++i) joined += c.recv<std::string>() + "|";
        c.send(joined);
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();

  for (const char* s : {"a", "", "bcd", "efgh", "i"}) here.send(std::string(s));
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("message " << i << " of " << sizes[i] << " bytes");
    const auto got = here.recv_bytes();
    CHECK(got.size() == sizes[i]);
    CHECK(got == pattern(sizes[i], i));
  }
  CHECK(here.recv<std::string>() == "a||bcd|efgh|i|");
  p.join();
  CHECK(p.exitcode() == 0);
}

// Records on a duplex end (docs/design/connection.md): a frame's first record holds the header and at
// most 64 KiB in all, the others at most a quarter of the end's send buffer (64 KiB to 256 KiB); a
// Pipe() end raises its send buffer (to 1 MiB, capped by wmem_max) only while it sends a message longer
// than 256 KiB.
namespace {

int send_buffer(int fd) {
  int buf = 0;
  socklen_t len = sizeof buf;
  REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, &len) == 0);
  return buf;
}

std::size_t record_for(int sndbuf) {
  const std::size_t quarter = (static_cast<std::size_t>(sndbuf) / 4) & ~std::size_t{4095};
  return std::clamp(quarter, std::size_t{64} << 10, std::size_t{256} << 10);
}

// The records a socket with a send buffer raised to 1 MiB allows (what the kernel makes of the request).
std::size_t raised_record() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  const int want = 1 << 20;
  REQUIRE(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &want, sizeof want) == 0);
  const std::size_t r = record_for(send_buffer(sv[0]));
  ::close(sv[0]);
  ::close(sv[1]);
  return r;
}

// One raw record from fd (blocking); MSG_TRUNC would mean it did not fit in 1 MiB.
std::vector<std::byte> raw_record(int fd) {
  std::vector<std::byte> buf(std::size_t{1} << 20);
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  ssize_t r;
  do {
    r = ::recvmsg(fd, &m, 0);
  } while (r < 0 && errno == EINTR);
  REQUIRE(r >= 0);
  REQUIRE((m.msg_flags & MSG_TRUNC) == 0);
  buf.resize(static_cast<std::size_t>(r));
  return buf;
}

// Reads one frame of `size` body bytes as raw records off fd; returns the record sizes. The frame must
// be the 8-byte length then pattern(size, seed).
std::vector<std::size_t> raw_frame(int fd, std::size_t size, std::uint64_t seed) {
  std::vector<std::size_t> sizes;
  std::vector<std::byte> frame;
  while (frame.size() < 8 + size) {
    const auto rec = raw_record(fd);
    REQUIRE(!rec.empty());
    sizes.push_back(rec.size());
    frame.insert(frame.end(), rec.begin(), rec.end());
  }
  REQUIRE(frame.size() == 8 + size);
  std::uint64_t len = 0;
  for (std::size_t i = 0; i < 8; ++i) len |= std::uint64_t{std::to_integer<unsigned char>(frame[i])} << (8 * i);
  CHECK(len == size);
  const auto body = pattern(size, seed);
  CHECK(std::equal(frame.begin() + 8, frame.end(), body.begin()));
  return sizes;
}

void check_records(const std::vector<std::size_t>& sizes, std::size_t size, std::size_t record) {
  INFO(size << "-byte message, records of " << record << " expected, " << sizes.size() << " records");
  constexpr std::size_t kFirst = std::size_t{64} << 10;
  CHECK(sizes.front() == std::min(kFirst, size + 8));
  for (std::size_t i = 1; i + 1 < sizes.size(); ++i) CHECK(sizes[i] == record);
  CHECK(sizes.back() <= record);
  if (size + 8 > kFirst) CHECK(sizes.size() == 2 + (size - (kFirst - 8) - 1) / record);
}

}  // namespace

TEST_CASE("connection: a Pipe() end sends a message over 256 KiB in larger records, then sets its send buffer "
          "back", "[connection]") {
  constexpr std::size_t kSmall = std::size_t{200} << 10;     // normal records
  constexpr std::size_t kLarge = (std::size_t{3} << 20) + 5;  // records for the raised buffer
  auto [here, there] = mproc::Pipe();
  const int normal = send_buffer(there.fileno());
  const std::size_t normal_record = record_for(normal);
  const std::size_t big_record = raised_record();
  Process p(
      [normal](Connection c) {
        c.send_bytes(pattern(kSmall, 76));
        c.send_bytes(pattern(kLarge, 77));
        int now = 0;
        socklen_t len = sizeof now;
        check(::getsockopt(c.fileno(), SOL_SOCKET, SO_SNDBUF, &now, &len) == 0 && now == normal,
              "the send buffer is back to its normal size after a large message");
        c.send(std::string("done"));
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();

  // Read the records off our fd ourselves (a test may; users may not) and reassemble the frames.
  check_records(raw_frame(here.fileno(), kSmall, 76), kSmall, normal_record);
  check_records(raw_frame(here.fileno(), kLarge, 77), kLarge, big_record);
  CHECK(here.recv<std::string>() == "done");
  p.join();
  CHECK(p.exitcode() == 0);
  CHECK(send_buffer(here.fileno()) == normal);  // our end was never raised
}

TEST_CASE("connection: a duplex receiver takes records of any size up to 256 KiB, in any mix", "[connection]") {
  // A 3 MiB frame cut by a raw sender in another process into records of mixed sizes, then a small
  // message: both arrive whole (the body buffer always keeps room for a 256 KiB record).
  constexpr std::size_t kSize = (std::size_t{3} << 20) + 7;
  auto [here, there] = mproc::Pipe();
  Process p(
      [](Connection c) {
        std::string frame = raw_header(kSize);
        const auto body = pattern(kSize, 78);
        frame.append(reinterpret_cast<const char*>(body.data()), body.size());
        // A record must fit the sender's send buffer: raise it (256 KiB records need wmem_max >= 160 KiB).
        const int want = 1 << 20;
        check(::setsockopt(c.fileno(), SOL_SOCKET, SO_SNDBUF, &want, sizeof want) == 0, "SO_SNDBUF");
        int got = 0;
        socklen_t len = sizeof got;
        check(::getsockopt(c.fileno(), SOL_SOCKET, SO_SNDBUF, &got, &len) == 0, "getsockopt");
        const std::size_t big = std::min(std::size_t{256} << 10, static_cast<std::size_t>(got) - 4096);
        const std::size_t cuts[] = {100, big, 1, 4096, big - 1, 65536, 3};
        std::size_t off = 0;
        for (std::size_t i = 0; off < frame.size(); ++i) {
          const std::size_t n = std::min(cuts[i % std::size(cuts)], frame.size() - off);
          const ssize_t w = ::send(c.fileno(), frame.data() + off, n, MSG_NOSIGNAL);
          check(w == static_cast<ssize_t>(n), "one raw record sent whole");
          off += n;
        }
        c.send(std::string("after"));
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();
  const auto got = here.recv_bytes();
  REQUIRE(got.size() == kSize);
  CHECK(got == pattern(kSize, 78));
  CHECK(here.recv<std::string>() == "after");
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("connection: an adopted SOCK_SEQPACKET socket with a small send buffer still carries large messages",
          "[connection]") {
  // The record size follows the adopted socket's own send buffer (its options are not changed); a
  // buffer too small for a 64 KiB record makes the sender halve its records (EMSGSIZE).
  const int requested = GENERATE(4096, 65536);
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  for (int fd : sv) REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &requested, sizeof requested) == 0);
  Connection here(sv[0]), there(sv[1]);
  constexpr std::size_t kSize = (std::size_t{1} << 20) + 9;
  Process p(
      [](Connection c) {
        const auto b = c.recv_bytes();
        c.send_bytes(b);
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();
  INFO("SO_SNDBUF requested " << requested);
  // The child reads the whole message before it writes it back: send all, then receive.
  here.send_bytes(pattern(kSize, 79));
  const auto back = here.recv_bytes();
  REQUIRE(back.size() == kSize);
  CHECK(back == pattern(kSize, 79));
  p.join();
  CHECK(p.exitcode() == 0);
}

// ---------------------------------------------------------------------------------------------------
// poll, EOF, maxlength
// ---------------------------------------------------------------------------------------------------

TEST_CASE("connection: poll: false at once with nothing, false after its timeout, true once data arrives",
          "[connection]") {
  auto [here, there] = mproc::Pipe();
  Process p(
      [](Connection c) {
        c.recv_bytes();  // the parent's go: only then is there anything to read
        c.send(std::string("x"));
        c.recv_bytes();  // stay (so the end stays open) until the parent has seen "nothing more"
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();

  auto t0 = t::Clock::now();
  CHECK_FALSE(here.poll());
  CHECK(t::ms_since(t0) < 1000);  // returns at once; the bound is a hang guard for a loaded machine

  t0 = t::Clock::now();
  CHECK_FALSE(here.poll(200ms));
  const double waited = t::ms_since(t0);
  CHECK(waited >= 190);
  CHECK(waited < 2000);

  here.send_bytes({});
  t0 = t::Clock::now();
  CHECK(here.poll(10s));
  CHECK(t::ms_since(t0) < 5000);
  CHECK(here.poll());  // still there: poll does not consume
  CHECK(here.recv<std::string>() == "x");
  CHECK_FALSE(here.poll());

  // EOF is "ready" too: the child exits, its end (the only other copy) closes.
  here.send_bytes({});
  CHECK(here.poll(std::chrono::nanoseconds::max()));
  CHECK_THROWS_AS(here.recv_bytes(), EOFError);
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("connection: EOFError once the peer closed, not while the parent still holds the child end",
          "[connection]") {
  auto [here, there] = mproc::Pipe();
  Process p([](Connection c) { c.send(std::string("last words")); }, there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  REQUIRE(p.exitcode() == 0);

  CHECK(here.recv<std::string>() == "last words");
  // The classic gotcha: the child is gone, but this process still holds `there`, so no EOF yet.
  CHECK_FALSE(here.poll());
  there.close();
  CHECK(here.poll());
  CHECK_THROWS_AS(here.recv_bytes(), EOFError);
  CHECK_THROWS_AS(here.recv<int>(), EOFError);  // and again: EOF stays EOF
}

TEST_CASE("connection: recv_bytes(maxlength) too small throws mproc::Error and leaves the connection broken",
          "[connection]") {
  auto [here, there] = mproc::Pipe();
  Process p(
      [](Connection c, Connection parents_end) {
        parents_end.close();  // inherited by fork: while open here, this child would never see EOF
        c.send_bytes(pattern(100, 1));
        c.send_bytes(pattern(101, 2));
        c.poll(std::chrono::nanoseconds::max());  // until the parent closes its end
      },
      there, here);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();

  CHECK(here.recv_bytes(100) == pattern(100, 1));  // exactly maxlength is fine
  std::string what;
  CHECK(throws_plain_error([&] { here.recv_bytes(100); }, &what));
  CHECK(what.find("message too long") != std::string::npos);
  // Broken from now on: every I/O call says so with mproc::Error; close() still works.
  CHECK(throws_plain_error([&] { here.recv_bytes(); }));
  CHECK(throws_plain_error([&] { here.poll(); }));
  CHECK(throws_plain_error([&] { here.send_bytes({}); }));
  CHECK_FALSE(here.closed());
  here.close();
  CHECK(here.closed());
  CHECK_THROWS_AS(here.recv_bytes(), UsageError);
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("connection: a sender refuses a message over max_message_size and stays usable", "[connection]") {
  auto [a, b] = mproc::Pipe();
  CHECK(a.max_message_size() == Connection::default_max_message_size);
  CHECK(Connection::default_max_message_size == std::size_t{1} << 30);
  a.max_message_size(10);
  Connection a2 = a;
  CHECK(a2.max_message_size() == 10);  // shared by copies
  CHECK(throws_plain_error([&] { a.send_bytes(pattern(11, 0)); }));
  a.send_bytes(pattern(10, 0));
  CHECK(b.recv_bytes() == pattern(10, 0));
  // The receiver's own limit protects it.
  b.max_message_size(4);
  a.send_bytes(pattern(5, 0));
  CHECK(throws_plain_error([&] { b.recv_bytes(); }));
}

// ---------------------------------------------------------------------------------------------------
// One-way pipes, handles, fds
// ---------------------------------------------------------------------------------------------------

TEST_CASE("connection: one-way Pipe: (reader, writer), wrong direction is a UsageError", "[connection]") {
  auto [reader, writer] = mproc::Pipe(false);
  CHECK(reader.readable());
  CHECK_FALSE(reader.writable());
  CHECK_FALSE(writer.readable());
  CHECK(writer.writable());
  CHECK_THROWS_AS(reader.send_bytes({}), UsageError);
  CHECK_THROWS_AS(reader.send(1), UsageError);
  CHECK_THROWS_AS(writer.recv_bytes(), UsageError);
  CHECK_THROWS_AS(writer.recv<int>(), UsageError);
  CHECK_THROWS_AS(writer.poll(), UsageError);

  Process p(
      [](Connection w) {
        w.send(std::string("first"));
        w.send_bytes(pattern(200000, 7));  // more than the pipe buffer: needs the parent reading
        w.send(std::int64_t{-5});
      },
      writer);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  writer.close();

  CHECK(reader.recv<std::string>() == "first");
  CHECK(reader.recv_bytes() == pattern(200000, 7));
  CHECK(reader.recv<std::int64_t>() == -5);
  CHECK_THROWS_AS(reader.recv_bytes(), EOFError);
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("connection: Connection handles: copies share the end, close() closes it for all copies", "[connection]") {
  auto [a, b] = mproc::Pipe();
  Connection a2 = a;
  CHECK(a2.fileno() == a.fileno());
  a2.send(std::int32_t{5});
  CHECK(b.recv<std::int32_t>() == 5);
  a.close();
  CHECK(a.closed());
  CHECK(a2.closed());
  CHECK(a2.readable());  // the direction is still known
  CHECK_THROWS_AS(a2.send(1), UsageError);
  CHECK_THROWS_AS(a2.fileno(), UsageError);
  CHECK_THROWS_AS(a2.poll(), UsageError);
  CHECK_NOTHROW(a.close());  // a second close does nothing
  CHECK_THROWS_AS(b.recv_bytes(), EOFError);

  Connection empty;
  CHECK(empty.closed());
  CHECK_FALSE(empty.readable());
  CHECK_THROWS_AS(empty.recv_bytes(), UsageError);
  CHECK_THROWS_AS(empty.send_bytes({}), UsageError);
  CHECK_THROWS_AS(empty.fileno(), UsageError);

  Connection moved = std::move(b);
  CHECK_FALSE(moved.closed());
  CHECK(b.closed());  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
}

TEST_CASE("connection: every fd of a Pipe is close-on-exec, and the last copy closes it", "[connection]") {
  const auto before = t::open_fds().size();
  {
    auto [a, b] = mproc::Pipe();
    auto [r, w] = mproc::Pipe(false);
    for (int fd : {a.fileno(), b.fileno(), r.fileno(), w.fileno()}) CHECK(cloexec(fd));
    CHECK(t::open_fds().size() == before + 4);
  }
  CHECK(t::open_fds().size() == before);
}

TEST_CASE("connection: a Connection adopts an fd: a SOCK_STREAM socketpair keeps boundaries and large messages",
          "[connection]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  Connection here(sv[0]), there(sv[1]);
  const std::vector<std::size_t> sizes{0, 5, 8, 70000, 3 << 20, 1};
  Process p(
      [sizes](Connection c) {
        for (std::size_t i = 0; i < sizes.size(); ++i) {
          auto got = c.recv_bytes();
          check(got == pattern(sizes[i], i), "message differs");
          c.send_bytes(got);
        }
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("message " << i << " of " << sizes[i] << " bytes");
    here.send_bytes(pattern(sizes[i], i));
    CHECK(here.recv_bytes() == pattern(sizes[i], i));
  }
  p.join();
  CHECK(p.exitcode() == 0);
  CHECK_THROWS_AS(here.recv_bytes(), EOFError);

  CHECK_THROWS_AS(Connection(-1), UsageError);
  CHECK_THROWS_AS(Connection(here.fileno(), false, false), UsageError);
  int dg[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg) == 0);
  t::Fd d0(dg[0]), d1(dg[1]);
  CHECK_THROWS_AS(Connection(d0.get()), UsageError);  // not adopted: d0 still owns it
}

// ---------------------------------------------------------------------------------------------------
// mproc::wait
// ---------------------------------------------------------------------------------------------------

TEST_CASE("connection: mproc::wait over two connections and a Process sentinel", "[connection]") {
  auto [a_here, a_there] = mproc::Pipe();
  auto [b_here, b_there] = mproc::Pipe();
  Process p(
      [](Connection a, Connection b) {
        b.send(std::string("on b"));
        a.recv_bytes();  // the parent's go
        a.send(std::string("bye on a"));
      },
      a_there, b_there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  a_there.close();
  b_there.close();

  const std::vector<int> fds{a_here.fileno(), b_here.fileno(), p.sentinel()};
  CHECK(mproc::wait(fds, 10s) == std::vector<std::size_t>{1});
  CHECK(b_here.recv<std::string>() == "on b");
  CHECK(mproc::wait(fds, 0ms).empty());
  auto t0 = t::Clock::now();
  CHECK(mproc::wait(fds, 100ms).empty());
  CHECK(t::ms_since(t0) >= 95);

  a_here.send_bytes({});
  // Now a gets a message, then the child ends: b reaches EOF and the sentinel fires.
  REQUIRE(mproc::wait({p.sentinel()}, 10s) == std::vector<std::size_t>{0});
  CHECK(mproc::wait(fds) == std::vector<std::size_t>{0, 1, 2});  // nullopt timeout: forever, but all ready
  CHECK(a_here.recv<std::string>() == "bye on a");
  CHECK_THROWS_AS(b_here.recv_bytes(), EOFError);
  p.join();
  CHECK(p.exitcode() == 0);
  // The braced-list form, and raw fds.
  auto raw = t::make_pipe();
  CHECK(mproc::wait({raw.r.get(), a_here.fileno()}, 0ms) == std::vector<std::size_t>{1});  // a is at EOF
  raw.w.reset();
  CHECK(mproc::wait({raw.r.get()}, 10s) == std::vector<std::size_t>{0});
}

TEST_CASE("connection: mproc::wait rejects a negative fd and reports a closed one", "[connection]") {
  CHECK_THROWS_AS(mproc::wait({-1}, 0ms), UsageError);
  int closed_fd;
  {
    auto raw = t::make_pipe();
    closed_fd = raw.r.get();
  }
  try {
    mproc::wait({closed_fd}, 0ms);
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EBADF);
  }
  CHECK(mproc::wait(std::span<const int>{}, 10ms).empty());
}

// ---------------------------------------------------------------------------------------------------
// Malformed frames, EPIPE, EINTR
// ---------------------------------------------------------------------------------------------------

TEST_CASE("connection: malformed frames throw without allocating the claimed length and leave the process healthy",
          "[connection]") {
  auto report = t::make_pipe();
  auto child = t::RawChild::fork([w = report.w.get()]() -> int {
    std::string failures;
    auto fail = [&](const std::string& what) { failures += what + "\n"; };
    if (!kAsan) {  // ASan reserves terabytes of shadow address space: no RLIMIT_AS under it
      rlimit lim{std::size_t{512} << 20, std::size_t{512} << 20};
      if (::setrlimit(RLIMIT_AS, &lim) != 0) fail("setrlimit");
      // The limit bites: 768 MiB cannot be mapped (an up-front allocation of a claimed length would fail).
      void* m = ::mmap(nullptr, std::size_t{768} << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m != MAP_FAILED) {
        ::munmap(m, std::size_t{768} << 20);
        fail("768 MiB mapped despite RLIMIT_AS");
      }
    }
    auto expect_error = [&](const char* name, Connection& c, auto&& call, bool eof) {
      try {
        call(c);
        fail(std::string(name) + ": no exception");
      } catch (const EOFError& e) {
        if (!eof) fail(std::string(name) + ": EOFError instead of mproc::Error: " + e.what());
      } catch (const mproc::Error& e) {
        const std::string msg = e.what();
        if (eof || (msg.find("message too long") == std::string::npos && msg.find("is broken") == std::string::npos))
          fail(std::string(name) + ": unexpected mproc::Error: " + e.what());
      } catch (const std::exception& e) {
        fail(std::string(name) + ": unexpected exception: " + e.what());
      }
    };
    auto recv_bytes = [](Connection& c) { c.recv_bytes(); };
    auto recv_string = [](Connection& c) { c.recv<std::string>(); };
    // Raw bytes straight onto the writer's fd (one write(2) each: one record on a duplex end), then
    // (optionally) the writer closed.
    auto feed = [&](bool duplex, const std::vector<std::string>& writes, bool close_writer) {
      auto [r, wr] = mproc::Pipe(duplex);
      for (auto& raw : writes)
        if (!t::write_all(wr.fileno(), raw.data(), raw.size())) fail("write raw frame");
      if (close_writer) wr.close();
      return std::pair{r, wr};
    };

    for (bool duplex : {true, false}) {
      {  // 2^60: far beyond the maximum
        auto [r, wr] = feed(duplex, {raw_header(std::uint64_t{1} << 60) + "abc"}, false);
        expect_error("2^60", r, recv_bytes, false);
        expect_error("2^60, then broken", r, recv_bytes, false);
      }
      {  // all 64 bits set
        auto [r, wr] = feed(duplex, {raw_header(~std::uint64_t{0})}, false);
        expect_error("2^64-1", r, recv_string, false);
      }
      {  // one byte over the maximum
        auto [r, wr] = feed(duplex, {raw_header(Connection::default_max_message_size + 1)}, false);
        expect_error("max+1", r, recv_bytes, false);
      }
      {  // over a lowered maximum
        auto [r, wr] = feed(duplex, {raw_header(2048) + std::string(2048, 'x')}, false);
        r.max_message_size(1024);
        expect_error("over a lowered maximum", r, recv_bytes, false);
      }
      {  // exactly the maximum (1 GiB, more than RLIMIT_AS allows), truncated body, then close
        auto [r, wr] = feed(duplex, {raw_header(Connection::default_max_message_size) + std::string(100, 'y')}, true);
        expect_error("truncated 1 GiB body", r, recv_bytes, true);
        expect_error("after the truncated body", r, recv_bytes, true);
      }
      {  // the same through recv<T>
        auto [r, wr] = feed(duplex, {raw_header(std::size_t{900} << 20), std::string(5000, 'z')}, true);
        expect_error("truncated 900 MiB body, recv<string>", r, recv_string, true);
      }
      {  // truncated length
        auto [r, wr] = feed(duplex, {std::string("\x05\x00\x00", 3)}, true);
        expect_error("truncated length", r, recv_bytes, true);
      }
      {  // a whole frame whose body does not decode: CodecError, and the next message still arrives
        auto [r, wr] = feed(duplex, {raw_header(3) + "abc", raw_header(1) + "q"}, false);
        try {
          r.recv<std::uint64_t>();
          fail("undecodable body: no exception");
        } catch (const mproc::CodecError&) {
        } catch (const std::exception& e) {
          fail(std::string("undecodable body: ") + e.what());
        }
        try {
          if (string_of(r.recv_bytes()) != "q") fail("message after the undecodable one differs");
        } catch (const std::exception& e) {
          fail(std::string("message after the undecodable one: ") + e.what());
        }
      }
    }
    {  // duplex ends carry records: one record may not run past its message (here: two frames in one)
      auto [r, wr] = feed(true, {raw_header(3) + "abc" + raw_header(1) + "q"}, false);
      try {
        r.recv_bytes();
        fail("two frames in one record: no exception");
      } catch (const EOFError& e) {
        fail(std::string("two frames in one record: EOFError: ") + e.what());
      } catch (const mproc::Error& e) {
        if (std::string(e.what()).find("malformed") == std::string::npos)
          fail(std::string("two frames in one record: ") + e.what());
      }
    }
    // Healthy: a new Pipe works.
    try {
      auto [a, b] = mproc::Pipe();
      a.send(std::string("still fine"));
      if (b.recv<std::string>() != "still fine") fail("new Pipe: wrong message");
    } catch (const std::exception& e) {
      fail(std::string("new Pipe: ") + e.what());
    }
    t::write_str(w, failures);
    return failures.empty() ? 0 : 1;
  });
  report.w.reset();
  const std::string failures = t::read_to_eof(report.r.get(), 30s);
  auto st = child.wait_for(30s);
  INFO("failures in the child:\n" << failures);
  REQUIRE(st);
  INFO("child: " << t::describe_status(*st));
  CHECK(failures.empty());
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
}

TEST_CASE("connection: send to a closed peer throws system_error EPIPE, never SIGPIPE", "[connection]") {
  auto child = t::RawChild::fork([]() -> int {
    ::signal(SIGPIPE, SIG_DFL);  // the default action kills: a leaked SIGPIPE ends this child
    auto epipe = [](Connection& c) {
      try {
        c.send_bytes(pattern(100, 0));
      } catch (const std::system_error& e) {
        return e.code().value() == EPIPE;
      }
      return false;
    };
    auto sigpipe_pending = [] {
      sigset_t s;
      sigpending(&s);
      return sigismember(&s, SIGPIPE) == 1;
    };
    auto sigpipe_blocked = [] {
      sigset_t s;
      pthread_sigmask(SIG_SETMASK, nullptr, &s);
      return sigismember(&s, SIGPIPE) == 1;
    };
    {
      auto [a, b] = mproc::Pipe();
      b.close();
      if (!epipe(a)) return 10;
    }
    {  // the peer closed with unread data (Linux then reports ECONNRESET once): still EPIPE, then EOF
      auto [a, b] = mproc::Pipe();
      a.send_bytes(pattern(10, 0));
      b.close();  // with a's message unread
      if (!epipe(a)) return 19;
      try {
        a.recv_bytes();
        return 20;
      } catch (const EOFError&) {
      }
    }
    {
      auto [r, w] = mproc::Pipe(false);
      r.close();
      if (!epipe(w)) return 11;
      if (!epipe(w)) return 12;
      if (sigpipe_pending()) return 13;  // the guard consumed what the write raised
      if (sigpipe_blocked()) return 14;  // and restored the mask
    }
    {  // a SIGPIPE the program already had pending (blocked) is left to the program
      sigset_t s;
      sigemptyset(&s);
      sigaddset(&s, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &s, nullptr);
      ::raise(SIGPIPE);
      auto [r, w] = mproc::Pipe(false);
      r.close();
      if (!epipe(w)) return 15;
      if (!sigpipe_pending()) return 16;
      if (!sigpipe_blocked()) return 17;
      const timespec zero{0, 0};
      if (::sigtimedwait(&s, nullptr, &zero) != SIGPIPE) return 18;
      pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
    }
    return 0;
  });
  auto st = child.wait_for(30s);
  REQUIRE(st);
  INFO("child: " << t::describe_status(*st));
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
}

TEST_CASE("connection: send to a child that exited throws EPIPE in the parent", "[connection]") {
  for (bool duplex : {true, false}) {
    auto [first, second] = mproc::Pipe(duplex);
    // duplex: the child holds `second`; one-way: the child holds the reader `first`.
    Connection& mine = duplex ? first : second;
    Connection& theirs = duplex ? second : first;
    Process p([](Connection) {}, theirs);
    p.start();
    t::ScopeExit cleanup([&] { t::kill_and_join(p); });
    theirs.close();
    p.join();
    try {
      mine.send(std::string("anyone?"));
      FAIL("no exception");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == EPIPE);
    }
  }
}

TEST_CASE("connection: a peer that closed with our messages unread still delivers what it sent before EOF",
          "[connection]") {
  // Linux reports ECONNRESET on the first read of an AF_UNIX socket whose peer closed with data of ours
  // unread, BEFORE the messages the peer had sent: a reader that took ECONNRESET for EOF lost them.
  auto [mine, theirs] = mproc::Pipe();
  mine.send(std::string("never read"));
  mine.send(std::string("never read either"));
  Process p(
      [](Connection c) {
        for (int i = 0; i < 3; ++i) c.send(std::string("answer ") + std::to_string(i));
      },
      theirs);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  theirs.close();
  p.join();
  REQUIRE(p.exitcode() == 0);
  for (int i = 0; i < 3; ++i) CHECK(mine.recv<std::string>() == "answer " + std::to_string(i));
  CHECK_THROWS_AS(mine.recv_bytes(), EOFError);
}

namespace {
volatile sig_atomic_t g_usr1 = 0;
void on_usr1(int) { g_usr1 = g_usr1 + 1; }
}  // namespace

TEST_CASE("connection: recv and poll restart on EINTR (a handler without SA_RESTART)", "[connection]") {
  struct sigaction sa {}, old {};
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls fail with EINTR
  REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
  t::ScopeExit restore([&] { ::sigaction(SIGUSR1, &old, nullptr); });
  g_usr1 = 0;

  auto [here, there] = mproc::Pipe();
  const pid_t parent = ::getpid();
  Process p(
      [parent](Connection c) {
        for (int round = 0; round < 2; ++round) {
          c.recv_bytes();  // the parent is about to block
          for (int i = 0; i < 50; ++i) ::kill(parent, SIGUSR1);
          c.send(round);
        }
      },
      there);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  there.close();

  here.send_bytes({});
  CHECK(here.recv<int>() == 0);  // blocked in read while the signals arrive
  here.send_bytes({});
  CHECK(here.poll(30s));  // blocked in poll while the signals arrive
  CHECK(here.recv<int>() == 1);
  p.join();
  CHECK(p.exitcode() == 0);
  CHECK(g_usr1 > 0);
}
