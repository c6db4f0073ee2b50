// tests/test_queue.cpp — Queue, SimpleQueue and JoinableQueue (API.md §8) between real processes: FIFO,
// maxsize/Full/Empty and their timeouts, qsize/empty/full, handles passed by value, per-process close(),
// JoinableQueue accounting, MPMC exactly-once delivery, items far larger than the ring, items around the
// ring's size, a timed-out streamed put, and the crash-safety promise: producers and consumers SIGKILLed
// at random instants (mid-put, blocked in get, mid-way through a 64 MiB item) never tear an item or
// stall the survivors, and queues leave nothing in /dev/shm.
//
// Children never use Catch macros: they throw (exit code 1, the message on stderr) and the parent checks
// the exit code. Children are held and released through pipes; the only sleeps are the randomized kill
// instants of the chaos tests (seeded; the seed is printed, MPROC_TEST_SEED=<n> replays it), never a
// stand-in for synchronization. Every blocking get/put in these tests has a timeout, so a broken queue
// fails a check instead of hanging until ctest's TIMEOUT.
#include "catch.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <mproc/detail/test_hooks.hpp>
#include <mproc/mproc.hpp>
#include <mproc/queue.hpp>

#include "test_util.hpp"

using mproc::Empty;
using mproc::Full;
using mproc::JoinableQueue;
using mproc::Process;
using mproc::Queue;
using mproc::SimpleQueue;
using mproc::UsageError;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace queue_test {

// A user struct with a codec declared by MPROC_CODEC.
struct Order {
  std::int32_t id = 0;
  std::string customer;
  std::vector<double> amounts;
  std::optional<std::string> note;
  bool operator==(const Order&) const = default;
};

}  // namespace queue_test

MPROC_CODEC(queue_test::Order, id, customer, amounts, note);

namespace {

using Bytes = std::vector<std::byte>;
constexpr std::size_t kMiB = std::size_t{1} << 20;

// ---- child-side checks ------------------------------------------------------------------------------

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("child check failed: " + what);
}

// ---- seeds --------------------------------------------------------------------------------------------

// MPROC_TEST_SEED=<n> replays a run; otherwise a fresh seed, printed so that a failure can be replayed.
std::uint64_t test_seed(const char* test) {
  std::uint64_t s = 0;
  if (const char* e = std::getenv("MPROC_TEST_SEED"); e && *e) {
    s = std::strtoull(e, nullptr, 0);
  } else {
    std::random_device rd;
    s = (std::uint64_t{rd()} << 32) ^ rd() ^
        static_cast<std::uint64_t>(t::Clock::now().time_since_epoch().count());
  }
  std::printf("%s: seed %" PRIu64 " (replay with MPROC_TEST_SEED=%" PRIu64 ")\n", test, s, s);
  std::fflush(stdout);
  return s;
}

// ---- byte patterns and checked items ------------------------------------------------------------------

std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// n bytes that depend on seed at every position (xorshift, 8 bytes per step: 64 MiB in well under 1 s
// even in a Debug build).
void fill_pattern(std::byte* p, std::size_t n, std::uint64_t seed) {
  std::uint64_t x = mix64(seed) | 1;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<std::byte>(x);
  }
}
Bytes pattern(std::size_t n, std::uint64_t seed) {
  Bytes b(n);
  fill_pattern(b.data(), n, seed);
  return b;
}
// b == pattern(n, seed), without allocating the expected bytes (fresh memory costs ~5 us a page here).
bool is_pattern(const Bytes& b, std::size_t n, std::uint64_t seed) {
  if (b.size() != n) return false;
  std::byte chunk[64 * 1024];
  std::uint64_t x = mix64(seed) | 1;
  std::size_t i = 0;
  for (; i + 8 <= n;) {
    std::size_t k = 0;
    for (; k + 8 <= sizeof chunk && i + k + 8 <= n; k += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(chunk + k, &x, 8);
    }
    if (std::memcmp(chunk, b.data() + i, k) != 0) return false;
    i += k;
  }
  for (; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (b[i] != static_cast<std::byte>(x)) return false;
  }
  return true;
}

// Word-wise checksum: any torn, shifted or mixed-up payload changes it.
std::uint64_t checksum(const std::byte* p, std::size_t n, std::uint64_t h) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001B3ull;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ static_cast<std::uint64_t>(p[i])) * 0x100000001B3ull;
  return h;
}

// A self-checking item: a 32-byte header (magic, tag, seq, payload length, checksum over the header fields
// and the payload) and a payload whose bytes depend on (tag, seq), so that chunks of two different items
// can never pass for one.
struct ItemHeader {
  std::uint32_t magic;
  std::uint32_t tag;
  std::uint64_t seq;
  std::uint64_t payload;
  std::uint64_t sum;
};
static_assert(sizeof(ItemHeader) == 32);
constexpr std::uint32_t kItemMagic = 0x51C0FFEE;

std::uint64_t item_seed(std::uint32_t tag, std::uint64_t seq) { return (std::uint64_t{tag} << 40) ^ seq; }

// Fills b (reusing its memory) with item (tag, seq).
void make_item_into(Bytes& b, std::uint32_t tag, std::uint64_t seq, std::size_t payload) {
  b.resize(sizeof(ItemHeader) + payload);
  fill_pattern(b.data() + sizeof(ItemHeader), payload, item_seed(tag, seq));
  ItemHeader h{kItemMagic, tag, seq, payload, 0};
  h.sum = checksum(b.data() + sizeof(ItemHeader), payload, mix64(item_seed(tag, seq) ^ (payload << 1)));
  std::memcpy(b.data(), &h, sizeof h);
}
Bytes make_item(std::uint32_t tag, std::uint64_t seq, std::size_t payload) {
  Bytes b;
  make_item_into(b, tag, seq, payload);
  return b;
}

// The header of an intact item; nullopt for anything torn, truncated or mixed.
std::optional<ItemHeader> check_item(const Bytes& b) {
  if (b.size() < sizeof(ItemHeader)) return std::nullopt;
  ItemHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  if (h.magic != kItemMagic || h.payload != b.size() - sizeof(ItemHeader)) return std::nullopt;
  const std::size_t n = b.size() - sizeof(ItemHeader);
  if (checksum(b.data() + sizeof(ItemHeader), n, mix64(item_seed(h.tag, h.seq) ^ (h.payload << 1))) != h.sum)
    return std::nullopt;
  return h;
}

// ---- processes --------------------------------------------------------------------------------------

// Joins p within timeout; if it is still running then, kills it (so nothing is left behind) and returns
// nullopt, which fails the caller's check. Otherwise its exit code (-N for signal N).
std::optional<int> join_within(Process& p, t::ms timeout) {
  if (!p.join(timeout)) {
    p.kill();
    p.join();
    return std::nullopt;
  }
  return p.exitcode();
}

char proc_state(pid_t pid) {
  auto st = t::proc_stat(pid);
  return st ? st->state : '?';
}

// The stop point of the two chaos cases that kill mid-item: installed as the queue's get chunk hook (in
// the consumer child) or put chunk hook (in the producer child), it reports on reached_w after chunk
// `at` of a streamed record and blocks on hold_r (never written) until SIGKILLed. Set in that child only.
struct ChunkStop {
  std::size_t at;
  int reached_w;
  int hold_r;
};
ChunkStop g_chunk_stop{};

void stop_at_chunk(std::size_t index) noexcept {
  if (index != g_chunk_stop.at) return;
  t::write_str(g_chunk_stop.reached_w, "k");
  char c;
  while (::read(g_chunk_stop.hold_r, &c, 1) < 0 && errno == EINTR) {
  }
}

std::size_t count_of(const std::string& s, const std::string& part) {
  std::size_t n = 0;
  for (auto at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Basic semantics
// ---------------------------------------------------------------------------------------------------

TEST_CASE("queue: FIFO per producer: 20000 ints put by a child arrive in order", "[queue]") {
  static constexpr int kN = 20000;
  // The default 1 MiB ring, and a 4 KiB ring that wraps around every ~200 items and makes the producer
  // block for room again and again.
  for (std::size_t cap : {std::size_t{1} << 20, std::size_t{4096}}) {
    CAPTURE(cap);
    Queue<int> q(0, {.capacity_bytes = cap});
    Process p([](Queue<int> my_q) {
      for (int i = 0; i < kN; ++i) my_q.put(i);
    }, q);
    p.start();
    t::ScopeExit cleanup([&] { t::kill_and_join(p); });
    int first_wrong = -1, wrong_value = 0;
    for (int i = 0; i < kN; ++i) {
      const int v = q.get(10s);
      if (v != i && first_wrong < 0) {
        first_wrong = i;
        wrong_value = v;
      }
    }
    CAPTURE(first_wrong, wrong_value);
    CHECK(first_wrong == -1);
    CHECK(join_within(p, 10s) == 0);
    CHECK(q.qsize() == 0);
    CHECK(q.empty());
    CHECK_THROWS_AS(q.get_nowait(), Empty);
  }
}

TEST_CASE("queue: maxsize 2: Full from put_nowait and after a put timeout and Empty likewise and qsize 0-1-2-1-0",
          "[queue]") {
  Queue<int> q(2);
  CHECK(q.qsize() == 0);
  CHECK(q.empty());
  CHECK_FALSE(q.full());
  q.put(1);
  CHECK(q.qsize() == 1);
  CHECK_FALSE(q.empty());
  CHECK_FALSE(q.full());
  q.put(2);
  CHECK(q.qsize() == 2);
  CHECK(q.full());

  CHECK_THROWS_AS(q.put_nowait(3), Full);
  auto t0 = t::Clock::now();
  CHECK_THROWS_AS(q.put(3, 200ms), Full);
  double waited = t::ms_since(t0);
  CAPTURE(waited);
  CHECK(waited >= 190);
  CHECK(waited < 2000);
  CHECK(q.qsize() == 2);  // a failed put adds nothing

  // Full and Empty are mproc::Errors with a message.
  try {
    q.put_nowait(3);
    FAIL("put_nowait on a full queue returned");
  } catch (const mproc::Error& e) {
    CHECK(std::string(e.what()).size() > 0);
  }

  CHECK(q.get() == 1);
  CHECK(q.qsize() == 1);
  CHECK_FALSE(q.full());
  CHECK(q.get_nowait() == 2);
  CHECK(q.qsize() == 0);
  CHECK(q.empty());

  CHECK_THROWS_AS(q.get_nowait(), Empty);
  t0 = t::Clock::now();
  CHECK_THROWS_AS(q.get(200ms), Empty);
  waited = t::ms_since(t0);
  CAPTURE(waited);
  CHECK(waited >= 190);
  CHECK(waited < 2000);
  CHECK_THROWS_AS(q.get(0ms), Empty);

  // Room again: put_nowait succeeds, FIFO holds.
  q.put_nowait(4);
  q.put(5, 100ms);
  CHECK(q.full());
  CHECK(q.get(1s) == 4);
  CHECK(q.get(1s) == 5);
  CHECK(q.empty());

  // maxsize 0: never full.
  Queue<int> unbounded;
  for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
  CHECK(unbounded.qsize() == 1000);
  CHECK_FALSE(unbounded.full());
}

TEST_CASE("queue: a put blocked on a full queue completes once another process gets", "[queue]") {
  Queue<int> q(1);
  Queue<int> taken;
  q.put(1);
  t::Gate gate;
  Process c([](Queue<int> my_q, Queue<int> my_taken, t::ChildGate g) {
    g.arrive_and_wait();
    my_taken.put(my_q.get(10s));
  }, q, taken, gate.child());
  c.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(c); });
  REQUIRE(gate.wait_ready());
  CHECK_THROWS_AS(q.put_nowait(2), Full);  // a put would block now
  gate.release();
  q.put(2, 10s);  // blocks until the child has taken 1
  CHECK(taken.get(10s) == 1);
  CHECK(q.get(1s) == 2);
  CHECK(join_within(c, 10s) == 0);
}

TEST_CASE("queue: handles passed by value to children work both ways and in a grandchild", "[queue]") {
  Queue<int> to_child;
  Queue<std::string> to_parent;
  Process p([](Queue<int> in, Queue<std::string> out) {
    const int v = in.get(10s);
    out.put("child got " + std::to_string(v));
    // A grandchild forked from the child uses the same queues.
    Process g([](Queue<std::string> o, int x) { o.put("grandchild says " + std::to_string(x)); }, out, v + 1);
    g.start();
    g.join();
    check(g.exitcode() == 0, "grandchild exit code");
    out.put(std::to_string(::getpid()));
  }, to_child, to_parent);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  to_child.put(41);
  CHECK(to_parent.get(10s) == "child got 41");
  CHECK(to_parent.get(10s) == "grandchild says 42");
  CHECK(to_parent.get(10s) == std::to_string(*p.pid()));
  CHECK(join_within(p, 10s) == 0);

  // Copies in one process are the same queue.
  Queue<int> copy = to_child;
  copy.put(5);
  CHECK(to_child.qsize() == 1);
  CHECK(to_child.get_nowait() == 5);
  CHECK(copy.empty());
}

TEST_CASE("queue: close() is per process: puts here throw UsageError while gets work and children are unaffected",
          "[queue]") {
  // What is tested: close() stops every handle of the queue *in the calling process* from putting;
  // get() still works there; a second close() does nothing; a child forked after the close has not
  // closed the queue itself, so its puts work (mproc::Process and a raw fork alike); and a child's close()
  // does not close the queue for its parent.
  Queue<int> q;
  Queue<int> copy = q;
  q.put(1);
  q.close();
  CHECK_THROWS_AS(q.put(2), UsageError);
  CHECK_THROWS_AS(q.put_nowait(2), UsageError);
  CHECK_THROWS_AS(q.put(2, 10ms), UsageError);
  CHECK_THROWS_AS(copy.put(2), UsageError);  // every handle in this process
  CHECK(q.get(1s) == 1);                      // gets still work
  CHECK_NOTHROW(q.close());                   // a second close does nothing
  CHECK_THROWS_AS(q.put(3), UsageError);
  CHECK(q.empty());

  Process p([](Queue<int> my_q) {
    my_q.put(7);
    my_q.put(8);
  }, q);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  CHECK(q.get(10s) == 7);
  CHECK(q.get(10s) == 8);
  CHECK(join_within(p, 10s) == 0);

  auto raw = t::RawChild::fork([&q] {
    q.put(9);
    return 0;
  });
  auto st = raw.wait_for(10s);
  REQUIRE(st);
  CHECK(t::describe_status(*st) == "exited 0");
  CHECK(q.get(10s) == 9);

  // The other way round: a child closes its side; the parent can still put.
  Queue<int> r;
  Process c([](Queue<int> my_r) {
    my_r.close();
    bool refused = false;
    try {
      my_r.put(1);
    } catch (const UsageError&) {
      refused = true;
    }
    check(refused, "put after close in the child must throw UsageError");
  }, r);
  c.start();
  t::ScopeExit cleanup_c([&] { t::kill_and_join(c); });
  CHECK(join_within(c, 10s) == 0);
  CHECK(r.empty());  // the child's refused put left nothing
  r.put(5);
  CHECK(r.get(1s) == 5);
}

TEST_CASE("queue: JoinableQueue with 4 workers: join() returns once every task is done and one task_done too many throws",
          "[queue]") {
  static constexpr int kTasks = 400, kWorkers = 4;
  JoinableQueue<int> tasks;
  Queue<std::int64_t> results;
  std::vector<Process> workers;
  for (int w = 0; w < kWorkers; ++w)
    workers.emplace_back([](JoinableQueue<int> my_tasks, Queue<std::int64_t> my_results) {
      for (;;) {
        const int v = my_tasks.get(30s);
        if (v < 0) {  // the sentinel: one per worker
          my_tasks.task_done();
          return;
        }
        my_results.put(std::int64_t{v} * v);  // the result is in before the task is marked done
        my_tasks.task_done();
      }
    }, tasks, results);
  for (auto& w : workers) w.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(workers); });

  for (int i = 1; i <= kTasks; ++i) tasks.put(i);
  for (int w = 0; w < kWorkers; ++w) tasks.put(-1);
  tasks.join();
  // join() returned: every task_done() has happened, so every result is already in the result queue.
  CHECK(results.qsize() == kTasks);
  CHECK(tasks.qsize() == 0);

  std::int64_t sum = 0;
  for (int i = 0; i < kTasks; ++i) sum += results.get(5s);
  std::int64_t expected = 0;
  for (std::int64_t i = 1; i <= kTasks; ++i) expected += i * i;
  CHECK(sum == expected);
  CHECK(results.empty());
  for (auto& w : workers) CHECK(join_within(w, 10s) == 0);

  // Every task put (kTasks + the sentinels) has been marked done: one more is a UsageError, and join()
  // returns at once.
  CHECK_THROWS_AS(tasks.task_done(), UsageError);
  tasks.join();
  tasks.put(1);
  CHECK(tasks.get(1s) == 1);
  tasks.task_done();
  CHECK_THROWS_AS(tasks.task_done(), UsageError);

  JoinableQueue<int> fresh;
  CHECK_THROWS_AS(fresh.task_done(), UsageError);
  fresh.join();  // nothing put: returns at once
}

TEST_CASE("queue: SimpleQueue put/get/empty/close across processes", "[queue]") {
  SimpleQueue<std::string> sq;
  CHECK(sq.empty());
  sq.put("a");
  CHECK_FALSE(sq.empty());
  CHECK(sq.get() == "a");
  CHECK(sq.empty());

  Process p([](SimpleQueue<std::string> my_sq) {
    my_sq.put("from the child");
    my_sq.put("");
  }, sq);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  CHECK(join_within(p, 10s) == 0);  // both items are in before get() (which has no timeout) is called
  CHECK_FALSE(sq.empty());
  CHECK(sq.get() == "from the child");
  CHECK(sq.get() == "");
  CHECK(sq.empty());

  sq.put("last");
  sq.close();
  CHECK_THROWS_AS(sq.put("x"), UsageError);
  CHECK(sq.get() == "last");
  sq.close();
  CHECK(sq.empty());
}

TEST_CASE("queue: an MPROC_CODEC struct and strings and empty values cross the queue", "[queue]") {
  using queue_test::Order;
  // One queue per direction: a process that puts and then gets on the same queue may get its own item.
  Queue<Order> to_child, to_parent;
  Queue<std::string> strings;
  Queue<Bytes> bytes;
  const Order a{1, "Ada", {1.5, 2.25, -3.0}, std::nullopt};
  const Order b{2, std::string(10000, 'x'), {}, std::string("fragile")};
  Process p([](Queue<Order> in, Queue<Order> out, Queue<std::string> my_strings, Queue<Bytes> my_bytes) {
    Order o = in.get(10s);
    o.id += 100;
    o.amounts.push_back(42.0);
    out.put(o);
    out.put(in.get(10s));
    my_strings.put("");
    my_strings.put(std::string(3000, 'y'));
    my_bytes.put(Bytes{});
  }, to_child, to_parent, strings, bytes);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  to_child.put(a);
  const Order back = to_parent.get(10s);
  CHECK(back.id == 101);
  CHECK(back.customer == "Ada");
  CHECK(back.amounts == std::vector<double>{1.5, 2.25, -3.0, 42.0});
  CHECK_FALSE(back.note);
  to_child.put(b);
  CHECK(to_parent.get(10s) == b);
  CHECK(strings.get(10s) == "");
  CHECK(strings.get(10s) == std::string(3000, 'y'));
  CHECK(bytes.get(10s).empty());
  CHECK(join_within(p, 10s) == 0);
}

// Queue::put copies scalars, trivially copyable structs and vectors/strings of them into the ring as
// they are, without the codec (queue.hpp, detail::counted_run_v): those bytes must be the codec's own.
TEST_CASE("queue: values put without encoding (scalars, vectors, strings) are the codec's bytes and decode back",
          "[queue]") {
  using mproc::detail::counted_run_v;
  using mproc::detail::memcpy_v;
  static_assert(memcpy_v<std::uint64_t>);
  static_assert(counted_run_v<Bytes>);
  static_assert(counted_run_v<std::string>);
  static_assert(counted_run_v<std::vector<int>>);
  static_assert(counted_run_v<std::u32string>);
  static_assert(!counted_run_v<std::vector<bool>>);
  static_assert(!counted_run_v<std::vector<std::string>>);
  auto counted = [](const auto& v) {
    const std::uint64_t n = v.size();
    Bytes b(8);
    std::memcpy(b.data(), &n, 8);
    const auto* p = reinterpret_cast<const std::byte*>(v.data());
    b.insert(b.end(), p, p + v.size() * sizeof(v[0]));
    return b;
  };
  const std::vector<int> ints{1, -2, 3, 1 << 30};
  const std::u32string wide = U"h\u00e9llo";
  const Bytes bytes(64, std::byte{7});
  CHECK(mproc::encode(ints) == counted(ints));
  CHECK(mproc::encode(wide) == counted(wide));
  CHECK(mproc::encode(bytes) == counted(bytes));
  CHECK(mproc::encode(std::string("abc")) == counted(std::string("abc")));
  CHECK(mproc::encode(std::vector<int>{}) == counted(std::vector<int>{}));

  Queue<std::vector<int>> qi;
  Queue<std::u32string> qw;
  Queue<Bytes> qb;
  Queue<std::uint64_t> qu;
  for (int round = 0; round < 3; ++round) {
    qi.put(ints);
    qi.put({});
    qw.put(wide);
    qb.put(bytes);
    qu.put(0x0123456789abcdefULL + static_cast<std::uint64_t>(round));
    CHECK(qi.get(10s) == ints);
    CHECK(qi.get(10s).empty());
    CHECK(qw.get(10s) == wide);
    CHECK(qb.get(10s) == bytes);
    CHECK(qu.get(10s) == 0x0123456789abcdefULL + static_cast<std::uint64_t>(round));
  }
}

// ---------------------------------------------------------------------------------------------------
// Many producers and consumers; large items
// ---------------------------------------------------------------------------------------------------

TEST_CASE("queue: MPMC with 4 producer processes x 5000 items and 3 consumers: every item exactly once", "[queue]") {
  static constexpr int kProducers = 4, kPerProducer = 5000, kConsumers = 3;
  static constexpr std::int64_t kStride = 1'000'000;  // item = producer * kStride + seq
  Queue<std::int64_t> q;
  Queue<std::vector<std::int64_t>> reports;  // each consumer: everything it got, in the order it got it
  t::Gate gate;
  std::vector<Process> producers, consumers;
  for (int c = 0; c < kConsumers; ++c)
    consumers.emplace_back([](Queue<std::int64_t> my_q, Queue<std::vector<std::int64_t>> my_reports) {
      std::vector<std::int64_t> got;
      for (;;) {
        const std::int64_t v = my_q.get(30s);
        if (v < 0) break;
        got.push_back(v);
      }
      my_reports.put(got);
    }, q, reports);
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back([](Queue<std::int64_t> my_q, t::ChildGate g, int id) {
      g.arrive_and_wait();  // all producers start together, for contention on the put side
      for (int s = 0; s < kPerProducer; ++s) my_q.put(std::int64_t{id} * kStride + s);
    }, q, gate.child(), p);
  for (auto& c : consumers) c.start();
  t::ScopeExit cleanup_c([&] { t::kill_and_join(consumers); });
  for (auto& p : producers) p.start();
  t::ScopeExit cleanup_p([&] { t::kill_and_join(producers); });

  const auto t0 = t::Clock::now();
  REQUIRE(gate.wait_ready(kProducers));
  gate.release(kProducers);
  for (auto& p : producers) CHECK(join_within(p, 30s) == 0);
  for (int c = 0; c < kConsumers; ++c) q.put(-1);  // after every item, one sentinel per consumer

  std::vector<int> seen(kProducers * kPerProducer, 0);
  int out_of_range = 0, order_violations = 0;
  std::size_t total = 0;
  for (int c = 0; c < kConsumers; ++c) {
    const auto got = reports.get(30s);
    total += got.size();
    std::vector<std::int64_t> last(kProducers, -1);
    for (auto v : got) {
      const auto p = v / kStride, s = v % kStride;
      if (v < 0 || p >= kProducers || s >= kPerProducer) {
        ++out_of_range;
        continue;
      }
      ++seen[static_cast<std::size_t>(p * kPerProducer + s)];
      // Per producer, one consumer sees that producer's items in increasing order (FIFO per producer).
      if (s <= last[static_cast<std::size_t>(p)]) ++order_violations;
      last[static_cast<std::size_t>(p)] = s;
    }
  }
  for (auto& c : consumers) CHECK(join_within(c, 10s) == 0);
  std::printf("MPMC: %d x %d items through 3 consumers in %.0f ms\n", kProducers, kPerProducer, t::ms_since(t0));

  const auto lost = std::count(seen.begin(), seen.end(), 0);
  const auto dup = std::count_if(seen.begin(), seen.end(), [](int n) { return n > 1; });
  CAPTURE(total, lost, dup, out_of_range, order_violations);
  CHECK(total == std::size_t{kProducers * kPerProducer});
  CHECK(lost == 0);
  CHECK(dup == 0);
  CHECK(out_of_range == 0);
  CHECK(order_violations == 0);
  CHECK(q.empty());
}

TEST_CASE("queue: items of 8 MiB and 64 MiB pass through the default 1 MiB ring byte-identical", "[queue]") {
  Queue<Bytes> to_parent, to_child;  // default QueueOptions: a 1 MiB ring
  Queue<int> ack;
  Process p([](Queue<Bytes> out, Queue<Bytes> in, Queue<int> my_ack) {
    out.put(pattern(8 * kMiB, 8));
    out.put(pattern(64 * kMiB, 64));
    out.put(pattern(100, 1));  // a small one after them: the stream is still in step
    // And the other way: the parent sends 8 MiB for the child to check.
    check(is_pattern(in.get(60s), 8 * kMiB, 80), "8 MiB parent -> child");
    my_ack.put(1);
  }, to_parent, to_child, ack);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  CHECK(is_pattern(to_parent.get(30s), 8 * kMiB, 8));
  CHECK(is_pattern(to_parent.get(60s), 64 * kMiB, 64));
  CHECK(is_pattern(to_parent.get(10s), 100, 1));
  to_child.put(pattern(8 * kMiB, 80), 60s);
  CHECK(ack.get(30s) == 1);
  CHECK(join_within(p, 30s) == 0);
  CHECK(to_parent.empty());
  CHECK(to_child.empty());
}

TEST_CASE("queue: items around the ring size stream correctly through a 4 KiB ring", "[queue]") {
  Queue<Bytes> q(0, {.capacity_bytes = 4096});
  // Sizes on both sides of "fits in one chunk" (the codec adds a few bytes of its own, the ring 16 per
  // chunk), of a quarter ring (the smallest streamed chunk), and far beyond.
  std::vector<std::size_t> sizes{0, 1, 15, 16, 17, 1000, 1023, 1024, 1025};
  for (std::size_t s = 4096 - 48; s <= 4096 + 16; ++s) sizes.push_back(s);
  for (std::size_t s : {8191, 8192, 8193, 12288, 65536, 1000003}) sizes.push_back(s);
  Process p([](Queue<Bytes> my_q, std::vector<std::size_t> my_sizes) {
    for (std::size_t i = 0; i < my_sizes.size(); ++i) my_q.put(pattern(my_sizes[i], i));
  }, q, sizes);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  std::vector<std::size_t> bad;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    if (q.get(10s) != pattern(sizes[i], i)) bad.push_back(sizes[i]);
  CAPTURE(bad);
  CHECK(bad.empty());
  CHECK(join_within(p, 10s) == 0);
  CHECK(q.empty());
}

TEST_CASE("queue: a streamed put that times out mid-item delivers nothing of it", "[queue]") {
  Queue<Bytes> q(0, {.capacity_bytes = 4096});
  // No consumer: the first chunks of this 100 kB item fill the ring, then the put times out mid-item.
  const auto t0 = t::Clock::now();
  CHECK_THROWS_AS(q.put(pattern(100000, 1), 150ms), Full);
  const double waited = t::ms_since(t0);
  CAPTURE(waited);
  CHECK(waited >= 140);
  CHECK(waited < 2000);
  CHECK(q.qsize() == 0);
  // A child's item put after it arrives; the partial item never does.
  Process p([](Queue<Bytes> my_q) { my_q.put(pattern(10, 2)); }, q);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  CHECK((q.get(10s) == pattern(10, 2)));
  CHECK(join_within(p, 10s) == 0);
  CHECK_THROWS_AS(q.get(50ms), Empty);
  CHECK(q.empty());
}

// ---------------------------------------------------------------------------------------------------
// Chaos: SIGKILL at random instants
// ---------------------------------------------------------------------------------------------------

TEST_CASE("queue chaos: producers SIGKILLed 50 times mid-stream never tear an item or stall the others",
          "[queue][chaos]") {
  // A 'big' producer streams 3 MiB items (three times the ring, so at least 4 chunks each) in a loop
  // and is SIGKILLed, 50 times over (a fresh producer each round): in every 10th round at a known point,
  // right after it published chunk j (0-2, from the seed) of its first item, where its put chunk hook
  // reports and blocks; in the other rounds a random 0-30 ms after it starts putting. Meanwhile a
  // 'small' producer puts checksummed items of 32 B - 2 kB, and a consumer process checks every item
  // it gets: intact (checksum), the small producer's items all there and in order, each big producer's
  // items numbered 0, 1, 2, ... without a gap (so the one it was killed in, if any, is the only one
  // missing). The consumer runs with MPROC_TRACE on, so the test counts the partial items it dropped:
  // at least one per stopped round, whose kill is mid-item by construction.
  static constexpr int kRounds = 50, kStopEvery = 10, kStoppedRounds = kRounds / kStopEvery;
  static constexpr std::uint32_t kSmallTag = 1, kEndTag = 2, kBigTag = 100;  // big producer r: kBigTag + r
  static constexpr std::size_t kBigPayload = 3 * kMiB;
  const std::uint64_t seed = test_seed("producer chaos");
  std::mt19937_64 rng(seed);
  const auto t0 = t::Clock::now();

  Queue<Bytes> q;
  auto report = t::make_pipe();  // consumer -> parent: one summary line
  auto trace = t::make_pipe();   // the consumer's stderr (MPROC_TRACE lines)
  auto stop = t::make_pipe();    // parent -> small producer: one byte means "stop now"

  Process consumer([](Queue<Bytes> my_q, int report_w, int trace_w) {
    ::dup2(trace_w, 2);
    mproc::set_trace(true);
    std::vector<std::uint64_t> next_big(kRounds, 0);
    std::uint64_t next_small = 0, big = 0;
    char line[256];
    for (;;) {
      const Bytes b = my_q.get(30s);  // Empty after 30 s with nothing: the child fails, the test sees it
      const auto h = check_item(b);
      if (!h) {
        std::snprintf(line, sizeof line, "FAIL torn or corrupt item of %zu bytes after %" PRIu64 " small, %" PRIu64 " big\n",
                      b.size(), next_small, big);
        t::write_str(report_w, line);
        return;
      }
      if (h->tag == kSmallTag) {
        if (h->seq != next_small) {
          std::snprintf(line, sizeof line, "FAIL small item %" PRIu64 " where %" PRIu64 " was due\n", h->seq, next_small);
          t::write_str(report_w, line);
          return;
        }
        ++next_small;
      } else if (h->tag == kEndTag) {
        if (h->seq != next_small) {
          std::snprintf(line, sizeof line, "FAIL the small producer put %" PRIu64 " items, %" PRIu64 " arrived\n", h->seq,
                        next_small);
          t::write_str(report_w, line);
          return;
        }
        std::snprintf(line, sizeof line, "ok small=%" PRIu64 " big=%" PRIu64 "\n", next_small, big);
        t::write_str(report_w, line);
        return;
      } else if (h->tag >= kBigTag && h->tag < kBigTag + kRounds && h->payload == kBigPayload) {
        auto& next = next_big[h->tag - kBigTag];
        if (h->seq != next) {
          std::snprintf(line, sizeof line, "FAIL big producer %u: item %" PRIu64 " where %" PRIu64 " was due\n",
                        h->tag - kBigTag, h->seq, next);
          t::write_str(report_w, line);
          return;
        }
        ++next;
        ++big;
      } else {
        std::snprintf(line, sizeof line, "FAIL unexpected item tag %u, %" PRIu64 " bytes\n", h->tag, h->payload);
        t::write_str(report_w, line);
        return;
      }
    }
  }, q, report.w.get(), trace.w.get());
  consumer.start();
  t::ScopeExit cleanup_consumer([&] { t::kill_and_join(consumer); });
  report.w.reset();  // only the consumer holds the write ends now: EOF once it is gone
  trace.w.reset();

  Process small([](Queue<Bytes> my_q, int stop_r) {
    std::uint64_t seq = 0;
    for (;; ++seq) {
      if (seq % 32 == 0 && t::wait_readable(stop_r, 0ms)) break;
      my_q.put(make_item(kSmallTag, seq, (seq * 7919) % 2048));
      // Pacing, not synchronization: the put lock is not fair, and a producer that re-takes it in a
      // tight loop could keep the big producers from ever getting it.
      sched_yield();
    }
    my_q.put(make_item(kEndTag, seq, 0));
  }, q, stop.r.get());
  small.start();
  t::ScopeExit cleanup_small([&] { t::kill_and_join(small); });

  int killed = 0;
  for (int r = 0; r < kRounds; ++r) {
    const bool stopped = r % kStopEvery == 0;
    constexpr std::uint64_t kNoStop = ~std::uint64_t{0};
    const std::uint64_t stop_at = stopped ? rng() % 3 : kNoStop;
    CAPTURE(r, stopped, stop_at);
    auto started = t::make_pipe(), reached = t::make_pipe(), hold = t::make_pipe();
    Process big([](Queue<Bytes> my_q, std::uint32_t tag, int started_w, std::uint64_t at, int reached_w, int hold_r) {
      if (at != kNoStop) {
        g_chunk_stop = {static_cast<std::size_t>(at), reached_w, hold_r};
        mproc::detail::set_queue_put_chunk_hook(&stop_at_chunk);
      }
      Bytes item;
      // Fresh memory costs ~5 us a page on this kind of VM: make the first item before "started", and
      // encode it twice so that the encoding buffer of every put() reuses warm heap memory (the first
      // free of a large block raises glibc's mmap threshold above it). The kills then land in put()s.
      make_item_into(item, tag, 0, kBigPayload);
      for (int i = 0; i < 2; ++i) (void)mproc::encode(item);
      t::write_str(started_w, "s");
      for (std::uint64_t seq = 0;;) {
        my_q.put(item);
        make_item_into(item, tag, ++seq, kBigPayload);
      }
    }, q, kBigTag + static_cast<std::uint32_t>(r), started.w.get(), stop_at, reached.w.get(), hold.r.get());
    big.start();
    t::ScopeExit cleanup_big([&] { t::kill_and_join(big); });
    reached.w.reset();  // the producer's end only: its exit is EOF here
    REQUIRE(t::wait_readable(started.r.get(), 10s));
    if (stopped)
      REQUIRE(t::read_n(reached.r.get(), 1, 30s) == "k");  // inside put, after chunk stop_at of item 0
    else
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30001));  // chaos, not synchronization
    big.kill();
    big.join();
    killed += big.exitcode() == -SIGKILL;
  }
  CHECK(killed == kRounds);

  t::write_str(stop.w.get(), "s");
  t::LineReader lines(report.r.get());
  const auto summary = lines.next(60s);
  CHECK(join_within(small, 30s) == 0);
  CHECK(join_within(consumer, 30s) == 0);
  const std::string traced = t::read_to_eof(trace.r.get(), 5s);
  const double elapsed = t::ms_since(t0);

  const std::size_t partial = count_of(traced, "dropping a partial record");
  const std::size_t repaired = count_of(traced, "died holding the put lock");
  std::printf("producer chaos: %d kills in %.0f ms; consumer: %s; %zu partial items dropped, %zu put-lock repairs "
              "by the consumer\n",
              killed, elapsed, summary ? summary->c_str() : "(no summary)", partial, repaired);
  INFO("consumer stderr:\n" << traced);
  REQUIRE(summary);
  CHECK(summary->rfind("ok ", 0) == 0);
  CHECK(partial >= kStoppedRounds);  // each stopped round left a partial item, dropped by the consumer
  CHECK(q.empty());
}

TEST_CASE("queue chaos: a consumer SIGKILLed while blocked in get() does not stop the other consumer",
          "[queue][chaos]") {
  // Two consumers block in get() on an empty queue: one holds the get lock and sleeps waiting for data,
  // the other sleeps waiting for the lock. A random one of them (the lock holder or the waiter) is
  // SIGKILLed; then one item is put, and the surviving consumer must get it. 20 rounds on one queue.
  static constexpr int kRounds = 20;
  const std::uint64_t seed = test_seed("blocked consumer chaos");
  std::mt19937_64 rng(seed);
  Queue<std::int64_t> q;
  Queue<std::int64_t> results;
  for (int r = 0; r < kRounds; ++r) {
    CAPTURE(r);
    auto ready = t::make_pipe();
    std::vector<Process> cs;
    for (int i = 0; i < 2; ++i)
      cs.emplace_back([](Queue<std::int64_t> my_q, Queue<std::int64_t> my_results, int ready_w) {
        t::write_str(ready_w, "r");
        my_results.put(my_q.get(30s));
      }, q, results, ready.w.get());
    for (auto& c : cs) c.start();
    t::ScopeExit cleanup([&] { t::kill_and_join(cs); });
    REQUIRE(t::read_n(ready.r.get(), 2, 10s).size() == 2);
    const pid_t p0 = *cs[0].pid(), p1 = *cs[1].pid();
    // Both asleep in get(): no fd can say so; /proc can (wait_until polls with a bound).
    REQUIRE(t::wait_until([&] { return proc_state(p0) == 'S' && proc_state(p1) == 'S'; }, 10s));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2001));  // chaos, not synchronization
    const std::size_t victim = rng() % 2, survivor = 1 - victim;
    cs[victim].kill();
    cs[victim].join();
    CHECK(cs[victim].exitcode() == -SIGKILL);
    q.put(r);
    CHECK(results.get(10s) == r);
    CHECK(join_within(cs[survivor], 10s) == 0);
  }
  CHECK(q.empty());
  CHECK(results.empty());
  // The queue is still healthy for everyone, in order.
  Process p([](Queue<std::int64_t> my_q) {
    for (std::int64_t i = 0; i < 1000; ++i) my_q.put(i);
  }, q);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  int wrong = 0;
  for (std::int64_t i = 0; i < 1000; ++i) wrong += q.get(10s) != i;
  CHECK(wrong == 0);
  CHECK(join_within(p, 10s) == 0);
}

TEST_CASE("queue chaos: a consumer SIGKILLed mid-way through a 64 MiB item and the next consumer gets the rest intact",
          "[queue][chaos]") {
  // C1 blocks in get(); a producer then puts A (64 MiB, streamed through the 1 MiB ring in at least 65
  // chunks), B (8 MiB) and 20 small items. Inside its get of A, right after it has taken chunk k (k in
  // [0, 63], from the seed, so never A's last), C1's chunk hook reports the stop on a pipe and blocks
  // there with the queue's get lock held; the parent then SIGKILLs it. So every kill lands mid-item, at a
  // known chunk, whatever the machine's speed. The parent, as the next consumer, must take over the lock
  // of a dead owner, drop A's rest and receive B and the 20 small items intact and in order. Three
  // rounds on the same queue, each at its own k. If C1 never reaches its stop point (the hook is not
  // called), it finishes A and the case fails.
  static constexpr std::uint32_t kA = 1, kB = 2, kSmall = 3;
  static constexpr int kRounds = 3, kSmallItems = 20;
  const std::uint64_t seed = test_seed("consumer mid-item chaos");
  std::mt19937_64 rng(seed);
  Queue<Bytes> q;
  for (int r = 0; r < kRounds; ++r) {
    const std::size_t k = rng() % 64;
    CAPTURE(r, k);
    auto ready = t::make_pipe(), reached = t::make_pipe(), hold = t::make_pipe(), done = t::make_pipe();
    Process c1([](Queue<Bytes> my_q, std::uint64_t at, int reached_w, int hold_r, int ready_w, int done_w) {
      g_chunk_stop = {static_cast<std::size_t>(at), reached_w, hold_r};
      mproc::detail::set_queue_get_chunk_hook(&stop_at_chunk);
      t::write_str(ready_w, "g");
      const Bytes a = my_q.get(60s);
      const auto h = check_item(a);
      t::write_str(done_w, h && h->tag == kA ? "d" : "x");
    }, q, std::uint64_t{k}, reached.w.get(), hold.r.get(), ready.w.get(), done.w.get());
    c1.start();
    t::ScopeExit cleanup_c1([&] { t::kill_and_join(c1); });
    reached.w.reset();  // C1's end only: its exit is EOF here
    done.w.reset();
    REQUIRE(t::wait_readable(ready.r.get(), 10s));

    Process producer([](Queue<Bytes> my_q, std::uint64_t round) {
      my_q.put(make_item(kA, round, 64 * kMiB));
      my_q.put(make_item(kB, round, 8 * kMiB));
      for (std::uint64_t i = 0; i < kSmallItems; ++i) my_q.put(make_item(kSmall, i, 100));
    }, q, static_cast<std::uint64_t>(r));
    producer.start();
    t::ScopeExit cleanup_p([&] { t::kill_and_join(producer); });

    // The stop point: C1 is inside the ring's get of A, after chunk k, and stays there.
    // Bounded below the 50 s watchdog (A takes ~2 s): a C1 stuck before its stop fails with this message.
    const std::string at_stop = t::read_n(reached.r.get(), 1, 30s);
    const std::string c1_said = at_stop.empty() ? t::read_to_eof(done.r.get(), 5s) : "";
    INFO("C1 never reached its stop point; after its get it reported '"
         << c1_said << "' ('d': A whole, 'x': not A, nothing: no return)");
    REQUIRE(at_stop == "k");
    c1.kill();
    c1.join();
    CHECK(c1.exitcode() == -SIGKILL);
    CHECK(t::read_to_eof(done.r.get(), 10s).empty());  // C1 never finished A

    // The parent is the next consumer: A went with C1, its rest is dropped, B comes first and whole.
    const auto h1 = check_item(q.get(60s));
    REQUIRE(h1);
    std::printf("  round %d: C1 SIGKILLed after chunk %zu of A; next consumer's first item: %s\n", r, k,
                h1->tag == kA ? "A" : h1->tag == kB ? "B" : "?");
    CHECK(h1->tag == kB);
    CHECK(h1->seq == static_cast<std::uint64_t>(r));
    int bad_small = 0;
    for (std::uint64_t i = 0; i < kSmallItems; ++i) {
      const auto h = check_item(q.get(30s));
      bad_small += !h || h->tag != kSmall || h->seq != i;
    }
    CHECK(bad_small == 0);
    CHECK(join_within(producer, 30s) == 0);
    CHECK(q.empty());
  }
}

TEST_CASE("queue: queues used by processes that are SIGKILLed leave nothing in /dev/shm", "[queue]") {
  // A child creates one of each queue kind, uses them with a grandchild it forks, and reports ready; both
  // are then SIGKILLed mid-use (the grandchild in the middle of its puts). While in use, neither maps
  // nor holds open anything in /dev/shm; afterwards /dev/shm holds nothing new of ours (entries of the
  // tests ctest runs beside this one are told apart as the leak guard does: mapped by them, or gone).
  const auto before = t::shm_entries();
  auto ready = t::make_pipe();
  auto hold = t::make_pipe();  // never written: the child blocks on it until killed
  Process child([](int ready_w, int hold_r) {
    Queue<Bytes> q(0, {.capacity_bytes = 64 * 1024});
    JoinableQueue<int> jq;
    SimpleQueue<std::string> sq;
    Process g([](Queue<Bytes> my_q, JoinableQueue<int> my_jq, SimpleQueue<std::string> my_sq) {
      my_jq.put(1);
      my_sq.put("hello");
      for (std::uint64_t i = 0;; ++i) my_q.put(Bytes(1000 + i % 5000));  // blocks once the ring is full
    }, q, jq, sq);
    g.start();
    for (int i = 0; i < 10; ++i) (void)q.get(10s);
    check(jq.get(10s) == 1, "jq");
    jq.task_done();
    check(sq.get() == "hello", "sq");
    char line[64];
    std::snprintf(line, sizeof line, "%d\n", static_cast<int>(*g.pid()));
    t::write_str(ready_w, line);
    char c;
    while (::read(hold_r, &c, 1) < 0 && errno == EINTR) {
    }
  }, ready.w.get(), hold.r.get());
  child.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(child); });
  ready.w.reset();
  t::LineReader lines(ready.r.get());
  const auto g_line = lines.next(10s);
  REQUIRE(g_line);
  const pid_t g_pid = static_cast<pid_t>(std::stol(*g_line));
  t::ScopeExit cleanup_g([&] {
    if (!t::is_ended(g_pid)) ::kill(g_pid, SIGKILL);
  });

  CHECK(t::shm_used_by(*child.pid()).empty());  // while in use
  CHECK(t::shm_used_by(g_pid).empty());

  REQUIRE(::kill(g_pid, SIGKILL) == 0);
  child.kill();
  child.join();
  CHECK(child.exitcode() == -SIGKILL);
  // The grandchild, orphaned, is reaped by whoever adopts it; it must at least be dead.
  CHECK(t::wait_until([&] { return t::is_ended(g_pid); }, 5s));
  CHECK(t::shm_left_since(before).empty());  // after
}
