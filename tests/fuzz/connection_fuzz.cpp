// tests/fuzz/connection_fuzz.cpp — libFuzzer harness for Connection's frame reader (src/connection.cpp).
//
// The input plays the peer: its bytes are written into one end of a channel, the end is closed, and the
// other end, adopted by a Connection, receives with recv_bytes until it throws. Input layout:
//   byte 0      the setup: bits 0-1 the transport (0, 3: SOCK_SEQPACKET socketpair = "records", as
//               Pipe(); 1: SOCK_STREAM socketpair, "stream"; 2: pipe), bits 2-4 max_message_size(),
//               bits 5-7 recv_bytes' maxlength (tables below: small limits make every check reachable);
//   the rest    stream and pipe: the bytes as they are. records: a sequence of records, each a length
//               byte n then n bytes (n = 0 is an empty record); what the socket buffer does not take
//               is left out (the writer is non-blocking: the harness never hangs).
// The properties checked (any violation calls std::abort(), which libFuzzer reports with the input):
//   * recv_bytes returns messages or throws EOFError or mproc::Error, nothing else (ASan/UBSan catch an
//     out-of-bounds access, libFuzzer a hang or an allocation past -malloc_limit_mb);
//   * the messages are the frames a reference parser finds in the same bytes (8-byte little-endian
//     length, then the body; a length over min(max_message_size, maxlength) ends it with "message too
//     long"), and the run ends the same way: exactly, on stream and pipe; on records the messages are
//     a prefix of the reference's, and equal to it when the run ends at EOF (unless the peer sent an
//     empty record, which reads as EOF) or with "too long" (records add one way to fail: "malformed");
//   * an Error leaves the end broken: the next recv_bytes and poll throw mproc::Error, not EOFError; after
//     EOF the next recv_bytes throws EOFError again.
//
// Built two ways: with clang -fsanitize=fuzzer,address,undefined as `connection_fuzz` (scripts/fuzz,
// in a build configured with -DMPROC_FUZZ=ON), and with the normal compiler, linked to replay_main.cpp,
// as `connection_fuzz_replay`, which ctest runs over tests/fuzz/corpus/connection.
// `connection_fuzz_replay --write-seeds DIR` regenerates the seeds.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mproc/connection.hpp>
#include <mproc/error.hpp>
#include <span>
#include <string>
#include <vector>

namespace connection_fuzz {

enum class Transport { records, stream, pipe };
constexpr std::size_t kMaxMessage[8] = {mproc::Connection::default_max_message_size, 0, 1, 8, 100, 1000, 65536,
                                        std::size_t{1} << 20};
constexpr std::size_t kMaxLength[8] = {SIZE_MAX, SIZE_MAX, 0, 8, 100, 1000, 4096, std::size_t{1} << 16};

enum class End { eof, too_long, malformed, none };

struct Outcome {
  std::vector<std::vector<std::byte>> messages;
  End end = End::none;
};

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "connection_fuzz: property violated: %s\n", what);
  std::abort();
}

// What a correct reader finds in `stream` (the bytes in the order they were sent).
Outcome reference(std::span<const std::byte> stream, std::size_t limit) {
  Outcome o;
  std::size_t pos = 0;
  for (;;) {
    if (stream.size() - pos < 8) {
      o.end = End::eof;
      return o;
    }
    std::uint64_t len = 0;
    for (int i = 0; i < 8; ++i) len |= std::uint64_t{std::to_integer<unsigned char>(stream[pos + i])} << (8 * i);
    if (len > limit) {
      o.end = End::too_long;
      return o;
    }
    if (stream.size() - pos - 8 < len) {
      o.end = End::eof;
      return o;
    }
    o.messages.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(pos + 8),
                            stream.begin() + static_cast<std::ptrdiff_t>(pos + 8 + len));
    pos += 8 + static_cast<std::size_t>(len);
  }
}

// Receive until recv_bytes throws; then check that the end stays as it ended.
Outcome receive(mproc::Connection& c, std::size_t maxlength, std::size_t max_messages) {
  Outcome o;
  for (std::size_t i = 0; i <= max_messages; ++i) {
    try {
      o.messages.push_back(c.recv_bytes(maxlength));
      continue;
    } catch (const mproc::EOFError&) {
      o.end = End::eof;
    } catch (const mproc::Error& e) {
      o.end = std::strstr(e.what(), "too long") ? End::too_long : End::malformed;
    }
    break;
  }
  if (o.end == End::none) violated("more messages than the input can hold");
  if (o.end != End::eof) {
    try {
      c.recv_bytes(maxlength);
      violated("recv_bytes on a broken end returned a message");
    } catch (const mproc::EOFError&) {
      violated("recv_bytes on a broken end threw EOFError, not 'broken'");
    } catch (const mproc::Error&) {
    }
    try {
      c.poll();
      violated("poll on a broken end did not throw");
    } catch (const mproc::Error&) {
    }
  }
  return o;
}

void check(std::span<const std::byte> in) {
  if (in.empty()) return;
  const unsigned setup = std::to_integer<unsigned>(in[0]);
  const Transport t = (setup & 3) == 1 ? Transport::stream : (setup & 3) == 2 ? Transport::pipe : Transport::records;
  const std::size_t max_message = kMaxMessage[(setup >> 2) & 7];
  const std::size_t maxlength = kMaxLength[(setup >> 5) & 7];
  in = in.subspan(1);

  int fds[2];  // [0] read end, [1] write end
  if (t == Transport::pipe) {
    if (::pipe2(fds, O_CLOEXEC) != 0) violated("pipe2 failed");
  } else if (::socketpair(AF_UNIX, (t == Transport::records ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0, fds) !=
             0) {
    violated("socketpair failed");
  }
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);

  // Write what the channel takes; `sent` is the stream of bytes in order, as the reader sees them.
  std::vector<std::byte> sent;
  bool empty_record = false;
  if (t == Transport::records) {
    std::size_t pos = 0;
    while (pos < in.size()) {
      const std::size_t n = std::min<std::size_t>(std::to_integer<unsigned>(in[pos]), in.size() - pos - 1);
      const std::byte* rec = in.data() + pos + 1;
      pos += 1 + n;
      if (::send(fds[1], rec, n, MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(n)) break;  // buffer full
      sent.insert(sent.end(), rec, rec + n);
      empty_record = empty_record || n == 0;
    }
  } else {
    std::size_t pos = 0;
    while (pos < in.size()) {
      const ssize_t w = ::write(fds[1], in.data() + pos, in.size() - pos);
      if (w <= 0) break;
      pos += static_cast<std::size_t>(w);
    }
    sent.assign(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(pos));
  }
  ::close(fds[1]);

  Outcome got;
  {
    mproc::Connection c(fds[0], true, false);  // owns fds[0] from here on
    c.max_message_size(max_message);
    got = receive(c, maxlength, sent.size() / 8 + 1);
    if (!empty_record && got.end == End::eof) {
      try {
        c.recv_bytes(maxlength);
        violated("recv_bytes after EOF returned a message");
      } catch (const mproc::EOFError&) {
      }
    }
  }

  const Outcome want = reference(sent, std::min(max_message, maxlength));
  if (t != Transport::records) {
    if (got.messages != want.messages) violated("the messages differ from the frames in the stream");
    if (got.end != want.end) violated("the stream ended differently than its frames say");
    return;
  }
  if (got.messages.size() > want.messages.size() ||
      !std::equal(got.messages.begin(), got.messages.end(), want.messages.begin()))
    violated("the messages are not a prefix of the frames in the records");
  if ((got.end == End::eof && !empty_record) || got.end == End::too_long) {
    if (got.messages != want.messages) violated("the records were read whole but some frames are missing");
    if (got.end != want.end) violated("the records ended differently than their frames say");
  }
}

// Seeds: the setup byte, then the payload.
void write_seed(const std::string& dir, const char* name, unsigned char setup, const std::vector<unsigned char>& body) {
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.put(static_cast<char>(setup));
  f.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
  if (!f) violated("cannot write a seed file");
}

std::vector<unsigned char> frame(const std::string& body, std::uint64_t claimed) {
  std::vector<unsigned char> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(claimed >> (8 * i)));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}
std::vector<unsigned char> frame(const std::string& body) { return frame(body, body.size()); }

std::vector<unsigned char> cat(std::initializer_list<std::vector<unsigned char>> parts) {
  std::vector<unsigned char> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Records: each part becomes one record (length byte, then the bytes).
std::vector<unsigned char> records(std::initializer_list<std::vector<unsigned char>> parts) {
  std::vector<unsigned char> out;
  for (const auto& p : parts) {
    out.push_back(static_cast<unsigned char>(p.size()));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

std::vector<unsigned char> slice(const std::vector<unsigned char>& v, std::size_t from, std::size_t to) {
  return {v.begin() + static_cast<std::ptrdiff_t>(from), v.begin() + static_cast<std::ptrdiff_t>(to)};
}

}  // namespace connection_fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  connection_fuzz::check(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  return 0;
}

/// Writes the seed corpus: well-formed and malformed frame sequences for each transport.
void mproc_fuzz_write_seeds(const char* dir);
void mproc_fuzz_write_seeds(const char* dir) {
  using namespace connection_fuzz;
  const auto two = cat({frame("hello"), frame("")});
  const auto hello = frame("hello");
  // setup byte: transport | max_message index << 2 | maxlength index << 5
  write_seed(dir, "stream-two-messages", 1, two);
  write_seed(dir, "pipe-two-messages", 2, two);
  write_seed(dir, "stream-truncated-body", 1, slice(hello, 0, 10));
  write_seed(dir, "pipe-truncated-header", 2, slice(hello, 0, 5));
  write_seed(dir, "pipe-claims-1GiB", 2, frame("tiny", std::uint64_t{1} << 30));
  write_seed(dir, "stream-too-long-for-max-message", 1 | 4 << 2, cat({frame("12345678"), frame("123456789")}));
  write_seed(dir, "pipe-too-long-for-maxlength", 2 | 3 << 5, cat({frame("ok"), frame("too long!")}));
  write_seed(dir, "stream-huge-length", 1, frame("x", ~std::uint64_t{0}));
  write_seed(dir, "records-two-messages", 0, records({frame("hello"), frame("")}));
  write_seed(dir, "records-split-header", 0, records({slice(hello, 0, 3), slice(hello, 3, 8), slice(hello, 8, 13)}));
  write_seed(dir, "records-body-in-pieces", 0,
             records({frame("abcdefgh"), slice(frame("abcdefgh"), 0, 10), slice(frame("abcdefgh"), 10, 16)}));
  write_seed(dir, "records-two-frames-in-one-record", 0, records({two}));
  write_seed(dir, "records-record-past-its-message", 0,
             records({slice(hello, 0, 10), cat({slice(hello, 10, 13), frame("next")})}));
  write_seed(dir, "records-empty-record", 0, records({frame("a"), {}, frame("b")}));
  write_seed(dir, "records-too-long", 0 | 2 << 2, records({frame("a"), frame("bc")}));
}
