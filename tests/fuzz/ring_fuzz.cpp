// tests/fuzz/ring_fuzz.cpp — libFuzzer harness for the queues' shared ring (src/shm/ring.{hpp,cpp}) as a
// corrupt or malicious peer sharing its memory can leave it.
//
// Every process that shares a Queue maps the ring's header and data area read-write, so the ring must
// survive anything another process writes there: it may throw mproc::Error ("queue ring corrupted"),
// report empty/full, or deliver wrong bytes, but never read or write outside the segment, allocate
// without bound, crash or hang. The input is a script run against a fresh shm::Ring (what
// Queue::put_nowait/get_nowait/qsize/task_done/join call, with a zero deadline):
//   byte 0        capacity 4096 + (b % 4) * 1000 (not a power of two: positions are taken modulo it),
//                 maxsize (b / 4) % 4 (0: none)
//   then commands, one byte each (b % 12) with their operands, at most 64:
//     0  put a record of (u16 % 12000) bytes (larger than the ring: it streams, and with nobody
//        consuming it fails half-way, leaving a partial record)   1  get        2  qsize, maxsize
//     3  task_done      4  join with a zero deadline      5/6  a thread dies holding put_lock/get_lock
//     7  set a header field (u8 selector, u64 value)       8  add an i16 to a header field
//     9  write bytes into the data area (u16 offset, u8 n, n bytes)
//     10 write a chunk header at tail + u16 offset (u8 flags selector, u16 len, u32 total)
//     11 put an empty record
// The two robust mutexes are never scribbled on: a peer that corrupts those attacks glibc, and can
// hang the queue by holding a lock anyway; their owner dying is what 5 and 6 play.
// Properties: every command returns or throws mproc::Error (anything else, or a crash, aborts); nothing
// is written past the data area (ASan cannot see that part of the mapping: the harness checks). As long
// as no command corrupted the memory (7-10), the ring must also be a FIFO of whole records: each get
// returns the oldest record whose put succeeded, byte for byte, and qsize counts them.
//
// Built two ways: with clang -fsanitize=fuzzer,address,undefined as `ring_fuzz` (scripts/fuzz, in a
// build configured with -DMPROC_FUZZ=ON), and with the normal compiler, linked to replay_main.cpp, as
// `ring_fuzz_replay`, which ctest runs over tests/fuzz/corpus/ring. `ring_fuzz_replay --write-seeds DIR`
// regenerates the seeds. It uses src/ internals (shm::Ring, and RingTestAccess for its header).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mproc/error.hpp>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "shm/ring.hpp"

namespace mproc::detail::shm {
// The ring's friend: its header and data area, as every process sharing the ring can write them.
struct RingTestAccess {
  static RingHeader& header(Ring& r) { return *r.h_; }
  static std::byte* data(Ring& r) { return r.data_; }
};
}  // namespace mproc::detail::shm

namespace ring_fuzz {

namespace shm = mproc::detail::shm;
namespace rf = shm::ring_format;
using u64 = std::uint64_t;
using mproc::detail::posix::Deadline;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "ring_fuzz: property violated: %s\n", what);
  std::abort();
}

// MPROC_FUZZ_VERBOSE=1: print the errors the commands got (to see what a seed reaches).
bool verbose() {
  static const bool v = std::getenv("MPROC_FUZZ_VERBOSE") != nullptr;
  return v;
}

// Reads the script; past its end every operand reads as zero.
struct Reader {
  std::span<const std::uint8_t> in;
  std::size_t pos = 0;
  bool more() const { return pos < in.size(); }
  std::uint8_t u8() { return pos < in.size() ? in[pos++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | u8() << 8); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(u16()) | static_cast<std::uint32_t>(u16()) << 16; }
  u64 u64v() { return static_cast<u64>(u32()) | static_cast<u64>(u32()) << 32; }
};

// The header's words a peer may scribble on (all but the mutexes).
constexpr unsigned kFields = 20;
void poke(shm::RingHeader& h, unsigned field, bool add, u64 v) {
  auto set64 = [&](std::atomic<u64>& a) { a.store(add ? a.load() + v : v); };
  auto set32 = [&](std::atomic<std::uint32_t>& a) { a.store(static_cast<std::uint32_t>(add ? a.load() + v : v)); };
  auto plain = [&](u64& a) { a = add ? a + v : v; };
  switch (field % kFields) {
    case 0: return plain(h.magic);
    case 1: return plain(h.capacity);
    case 2: return plain(h.maxsize);
    case 3: return set64(h.head);
    case 4: return set64(h.items_put);
    case 5: return set32(h.put_journal.valid);
    case 6: return set64(h.put_journal.a);
    case 7: return set64(h.put_journal.b);
    case 8: return set64(h.tail);
    case 9: return set64(h.items_got);
    case 10: return set32(h.get_journal.valid);
    case 11: return set64(h.get_journal.a);
    case 12: return set64(h.get_journal.b);
    case 13: return set32(h.data_seq);
    case 14: return set32(h.data_sleepers);
    case 15: return set32(h.space_seq);
    case 16: return set32(h.space_sleepers);
    case 17: return set64(h.tasks_done);
    case 18: return set32(h.done_seq);
    default: return set32(h.done_sleepers);
  }
}

// Record k's bytes: recognizable, so a torn or misplaced record shows.
std::vector<std::byte> make_record(std::size_t n, unsigned k) {
  std::vector<std::byte> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = static_cast<std::byte>((k * 131 + i * 7 + (i >> 8)) & 0xff);
  return r;
}

void run(std::span<const std::uint8_t> input) {
  Reader rd{input};
  const unsigned setup = rd.u8();
  shm::Ring ring(4096 + (setup % 4) * 1000, (setup / 4) % 4);
  shm::RingHeader& h = shm::RingTestAccess::header(ring);
  std::byte* data = shm::RingTestAccess::data(ring);
  const u64 cap = ring.capacity();
  const Deadline now(std::chrono::nanoseconds::zero());
  // The mapping ends at a page boundary: the bytes between the data area's end and it are mapped (ASan
  // sees no overrun there) and zero. A write past the data area lands there first: check they stay 0.
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto slack_begin = reinterpret_cast<std::uintptr_t>(data + cap);
  const std::size_t slack = static_cast<std::size_t>((slack_begin + page - 1) / page * page - slack_begin);
  auto slack_untouched = [&] {
    const auto* p = reinterpret_cast<const unsigned char*>(slack_begin);
    return std::all_of(p, p + slack, [](unsigned char c) { return c == 0; });
  };

  bool corrupt = false;           // a command wrote into the shared memory: no more FIFO checks
  std::deque<std::vector<std::byte>> fifo;  // the records put and not yet got
  u64 puts = 0, done = 0;
  unsigned next_record = 0;
  std::vector<std::byte> buf;

  for (int steps = 0; steps < 64 && rd.more(); ++steps) {
    const unsigned op = rd.u8() % 12;
    try {
      switch (op) {
        case 0:
        case 11: {
          const std::size_t n = op == 11 ? 0 : rd.u16() % 12000;
          auto rec = make_record(n, next_record++);
          if (ring.put(rec, now) && !corrupt) {
            fifo.push_back(std::move(rec));
            ++puts;
          }
          break;
        }
        case 1: {
          const auto n = ring.get(buf, now);
          if (n && *n > buf.size()) violated("get returned more bytes than its buffer holds");
          if (corrupt) break;
          if (!n) {
            if (!fifo.empty()) violated("get found nothing, but a record is in the ring");
            break;
          }
          if (fifo.empty()) violated("get returned a record nobody put");
          if (*n != fifo.front().size() || !std::equal(fifo.front().begin(), fifo.front().end(), buf.begin()))
            violated("get returned other bytes than the oldest record");
          fifo.pop_front();
          break;
        }
        case 2:
          if (!corrupt && ring.qsize() != fifo.size()) violated("qsize differs from the records in the ring");
          if (!corrupt && ring.capacity() != cap) violated("capacity changed");
          (void)ring.maxsize();
          break;
        case 3: {
          const bool ok = ring.task_done();
          if (!corrupt && ok != (done < puts)) violated("task_done accepted or refused wrongly");
          if (ok) ++done;
          break;
        }
        case 4: {
          const bool all = ring.join(now);
          if (!corrupt && all != (done >= puts)) violated("join with a zero deadline answered wrongly");
          break;
        }
        case 5:
        case 6: {
          // A thread that takes the lock and ends without unlocking: the next locker gets EOWNERDEAD
          // and repairs from the journal (a no-op unless a command corrupted it).
          shm::RobustMutex& m = op == 5 ? h.put_lock : h.get_lock;
          std::thread([&m] { (void)m.lock(); }).join();
          break;
        }
        case 7:
        case 8: {
          const unsigned field = rd.u8();
          const u64 v = op == 7 ? rd.u64v() : static_cast<u64>(static_cast<std::int64_t>(static_cast<std::int16_t>(rd.u16())));
          poke(h, field, op == 8, v);
          corrupt = true;
          break;
        }
        case 9: {
          const u64 off = rd.u16() % cap;
          const unsigned n = rd.u8() % 64;
          for (unsigned i = 0; i < n; ++i) data[(off + i) % cap] = static_cast<std::byte>(rd.u8());
          corrupt = true;
          break;
        }
        default: {  // 10: a plausible chunk header where the consumer looks next
          const u64 at = h.tail.load() + rd.u16();
          static constexpr std::uint32_t kFlags[4] = {rf::kFirst | rf::kLast, rf::kFirst, rf::kLast, 0};
          const std::uint8_t sel = rd.u8();
          const std::uint32_t flags = sel < 128 ? (rf::kChunkMagic | kFlags[sel % 4]) : rd.u32();
          rf::ChunkHeader ch{flags, rd.u16(), rd.u32()};
          const auto* p = reinterpret_cast<const std::byte*>(&ch);
          for (std::size_t i = 0; i < sizeof ch; ++i) data[(at + i) % cap] = p[i];
          corrupt = true;
          break;
        }
      }
    } catch (const mproc::Error& e) {
      // "queue ring corrupted: ...": a clear error is what a corrupt ring must give.
      if (!corrupt) violated("mproc::Error from a ring nobody corrupted");
      if (verbose()) std::fprintf(stderr, "ring_fuzz: command %u: %s\n", op, e.what());
    }
    if (!slack_untouched()) violated("a write past the end of the data area");
  }
}

// Seeds: scripts in the format above.
struct Script {
  explicit Script(std::uint8_t setup = 0) : b{setup} {}
  std::vector<std::uint8_t> b;
  Script& op(std::uint8_t o) { return u8(o); }
  Script& u8(std::uint8_t v) {
    b.push_back(v);
    return *this;
  }
  Script& u16(std::uint16_t v) { return u8(static_cast<std::uint8_t>(v)).u8(static_cast<std::uint8_t>(v >> 8)); }
  Script& u32(std::uint32_t v) { return u16(static_cast<std::uint16_t>(v)).u16(static_cast<std::uint16_t>(v >> 16)); }
  Script& u64v(u64 v) { return u32(static_cast<std::uint32_t>(v)).u32(static_cast<std::uint32_t>(v >> 32)); }
  Script& put(std::uint16_t n) { return op(0).u16(n); }
  Script& get() { return op(1); }
  Script& set(std::uint8_t field, u64 v) { return op(7).u8(field).u64v(v); }
  Script& add(std::uint8_t field, std::int16_t d) { return op(8).u8(field).u16(static_cast<std::uint16_t>(d)); }
  void write(const std::string& dir, const char* name) const {
    std::ofstream f(dir + "/" + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) violated("cannot write a seed file");
  }
};

}  // namespace ring_fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ring_fuzz::run(std::span<const std::uint8_t>(data, size));
  return 0;
}

/// Writes the seed corpus: legal traffic, and the corruptions a peer could leave.
void mproc_fuzz_write_seeds(const char* dir);
void mproc_fuzz_write_seeds(const char* dir) {
  using ring_fuzz::Script;
  // Field numbers: see poke(). 0 magic, 3 head, 4 items_put, 5-7 put_journal, 8 tail, 10-12 get_journal.
  Script().put(10).put(0).op(2).get().get().get().op(2).write(dir, "fifo");
  Script(1).put(3000).put(3000).get().put(3000).get().get().write(dir, "wrap-around");
  Script().put(9000).put(5).get().get().op(2).write(dir, "partial-streamed-record-dropped");
  Script(4).put(1).put(1).put(1).op(2).op(3).op(4).get().op(3).op(4).write(dir, "maxsize-and-tasks");
  Script().put(20).op(5).op(6).put(20).get().get().write(dir, "dead-lock-owners");
  Script().put(20).set(0, 0).get().put(1).write(dir, "bad-magic");
  Script().put(20).add(3, 4090).get().put(100).write(dir, "head-past-tail-plus-capacity");
  Script().put(20).set(8, 40000).put(11999).get().write(dir, "tail-past-head");
  Script().put(20).op(9).u16(4).u8(4).u32(~0u).get().write(dir, "chunk-len-scribbled");
  Script().put(20).op(9).u16(8).u8(8).u64v(~0ull).get().write(dir, "chunk-total-scribbled");
  Script().put(20).op(10).u16(0).u8(0).u16(20).u32(0xffffffffu).get().write(dir, "huge-total");
  Script().put(40).op(10).u16(0).u8(1).u16(40).u32(100).get().write(dir, "first-without-last");
  Script().op(6).set(10, 1).set(11, 5000).set(12, 7).get().put(1).write(dir, "corrupt-get-journal");
  Script().op(5).set(5, 1).set(6, ~0ull).set(7, 3).put(1).op(2).get().write(dir, "corrupt-put-journal");
  Script().set(4, 5).set(9, 9).op(2).op(3).op(4).write(dir, "counters-backwards");
}
