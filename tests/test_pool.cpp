// tests/test_pool.cpp — mproc::Pool, AsyncResult and mproc::async (API.md §12 and §3) with real worker
// processes: map/map_async/imap/imap_unordered/starmap/apply/apply_async with every kind of task function
// and chunk size, Python's chunksize heuristic, the codec on arguments and results, task exceptions as
// RemoteError, AsyncResult's timeouts and UsageError, crash isolation (SIGKILL, SIGSEGV, abort, _exit(3):
// WorkerLost for exactly the tasks the dead worker held, a replacement, a pool that keeps serving; 100
// crashes in a row), task_timeout, maxtasksperchild with the initializer, close/terminate/join and the
// destructor, Pool(200), lazy imap over a 10-million-item iota, on_progress, OS-visible worker names,
// fork safety with allocating parent threads, and mproc::async.
//
// Tasks are plain functions (a task may not capture: workers are forked before the tasks exist). What a
// task needs to share with the test (an Event to hold it, a Barrier to prove two workers run at once, a
// Value to report a pid) lives in a global std::optional that a Scoped guard fills BEFORE the Pool is
// built, so that the forked workers inherit the handle, and empties when the test ends. Sleeps appear only
// inside tasks, to make a task slow; the test itself waits on Events, Barriers, results with timeouts and
// (for /proc states that no fd announces) t::wait_until. Every blocking call on a result has a timeout, so
// a broken pool fails a check instead of hanging until ctest's TIMEOUT.
#include "catch.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <mproc/mproc.hpp>  // Pool, AsyncResult and mproc::async must be reachable from here alone

#include "test_util.hpp"

using mproc::Pool;
using mproc::PoolOptions;
using mproc::RemoteError;
using mproc::TimeoutError;
using mproc::UsageError;
using mproc::WorkerLost;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace pool_test {

// A user type through the codec, as an argument and as a result.
struct Point {
  int x = 0;
  std::string label;
  bool operator==(const Point&) const = default;
};

// A user exception type: RemoteError::type_name() must name it, demangled.
class CustomError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A result whose hand-written encoding writes part of itself and then throws, for a negative value.
struct HalfEncoded {
  long v = 0;
  bool operator==(const HalfEncoded&) const = default;
};

}  // namespace pool_test

MPROC_CODEC(pool_test::Point, x, label);

template <>
struct mproc::codec<pool_test::HalfEncoded> {
  static void encode(mproc::ByteWriter& w, const pool_test::HalfEncoded& h) {
    mproc::encode_to(w, std::int64_t{0x7777});  // bytes that look like a whole value...
    if (h.v < 0) throw mproc::CodecError("cannot encode a negative HalfEncoded");  // ...then a failure
    mproc::encode_to(w, static_cast<std::int64_t>(h.v));
  }
  static void decode(mproc::ByteReader& r, pool_test::HalfEncoded& h) {
    std::int64_t mark = 0, v = 0;
    mproc::decode_from(r, mark);
    mproc::decode_from(r, v);
    if (mark != 0x7777) r.fail("bad HalfEncoded mark");
    h.v = static_cast<long>(v);
  }
};

namespace {

// ---- shared handles the tasks reach (see the header) --------------------------------------------------

std::optional<mproc::Event> g_event;        // holds tasks until the test sets it
std::optional<mproc::Event> g_event2;       // a second one, for tasks held in two stages
std::optional<mproc::Barrier> g_barrier;    // proves that N workers run at the same time
std::optional<mproc::Value<int>> g_pid;     // a worker's pid, stored by a task just before it dies
std::optional<mproc::Value<long>> g_count;  // tasks executed (lock-free increments)
pid_t g_init_pid = 0;                       // set by the initializer, in the worker

/// Fills a global handle slot for the length of a scope. Declare it BEFORE the Pool.
template <class T>
class Scoped {
 public:
  template <class... A>
  explicit Scoped(std::optional<T>& slot, A&&... args) : slot_(slot) {
    slot_.emplace(std::forward<A>(args)...);
  }
  ~Scoped() { slot_.reset(); }
  Scoped(const Scoped&) = delete;
  Scoped& operator=(const Scoped&) = delete;
  T& operator*() { return *slot_; }
  T* operator->() { return &*slot_; }

 private:
  std::optional<T>& slot_;
};

// ---- tasks --------------------------------------------------------------------------------------------

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
std::string repeat(std::string s, int n, char sep) {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i ? std::string(1, sep) : std::string()) + s;
  return out;
}
std::size_t length_of(std::string s) { return s.size(); }
pid_t worker_pid(int) { return ::getpid(); }
pid_t pid_after_2ms(int) {
  std::this_thread::sleep_for(2ms);
  return ::getpid();
}
int square_after_10ms(int x) {
  std::this_thread::sleep_for(10ms);
  return x * x;
}
// Earlier items take longer: with several workers, later items finish first.
int square_early_is_slow(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds((20 - x % 20) * 4));
  return x * x;
}
pool_test::Point make_point(std::string label, std::vector<int> xs) {
  return {std::accumulate(xs.begin(), xs.end(), 0), label + "!"};
}
struct Square {  // a default-constructible function object type
  int operator()(int x) const { return x * x; }
};

// Holds until the test sets g_event (10 s at most: then it fails, so a broken test cannot hang a worker).
void wait_for_event() {
  if (!g_event.value().wait(10s)) throw std::runtime_error("g_event was never set");
}
int square_when_released(int x) {
  wait_for_event();
  return x * x;
}
// Holds until `gate` is set; after 10 s it sets the gate itself (so the tasks behind it do not wait
// 10 s more each) and fails, so a broken test fails within seconds instead of hanging.
void wait_at_gate(mproc::Event& gate) {
  if (!gate.wait(10s)) {
    gate.set();
    throw std::runtime_error("a gate was never opened");
  }
}
// Items 0..59 are answered at once, 60..119 once g_event is set, 120 and up once g_event2 is set.
int square_in_stages(int x) {
  if (x >= 120) wait_at_gate(g_event2.value());
  else if (x >= 60) wait_at_gate(g_event.value());
  return x * x;
}
// Item 0 is held until released; the others are answered at once.
int square_hold_zero(int x) {
  if (x == 0) wait_for_event();
  return x * x;
}
// Tells the test it started, then sleeps.
int announce_then_sleep_100ms(int x) {
  g_event.value().set();
  std::this_thread::sleep_for(100ms);
  return x;
}
int announce_then_sleep_10s(int x) {
  g_pid.value().store(::getpid());
  g_event.value().set();
  std::this_thread::sleep_for(10s);
  return x;
}
int sleep_100ms_square(int x) {
  std::this_thread::sleep_for(100ms);
  return x * x;
}
// Waits at g_barrier (so every party runs on its own worker at the same time), then says who it is.
std::tuple<pid_t, std::string, std::string, bool> whoami_at_barrier(int) {
  g_barrier.value().wait(10s);  // BrokenBarrierError (-> RemoteError) if the other parties never come
  std::ifstream f("/proc/self/comm");
  std::string comm;
  std::getline(f, comm);
  auto me = mproc::current_process();
  return {::getpid(), comm, me.name, me.daemon};
}
std::tuple<pid_t, std::string> whoami(int) {
  std::ifstream f("/proc/self/comm");
  std::string comm;
  std::getline(f, comm);
  return {::getpid(), comm};
}
int count_and_double(int x) {
  std::atomic_ref<long>(g_count.value().raw()).fetch_add(1);
  return 2 * x;
}
void count_only(int) { std::atomic_ref<long>(g_count.value().raw()).fetch_add(1); }
std::tuple<int, pid_t, bool> square_pid_initialized(int x) {
  return {x * x, ::getpid(), g_init_pid == ::getpid()};
}

// Exceptions.
int fail_on_3(int x) {
  if (x == 3) throw pool_test::CustomError("three is not allowed");
  return x * x;
}
int out_of_range_on_5(int x) {
  if (x == 5) throw std::out_of_range("index 5 is out of range");
  return x * x;
}
int throw_int_on_2(int x) {
  if (x == 2) throw 42;
  return x;
}
void void_fails(int) { throw std::invalid_argument("void task failed"); }

// Crashes: how a worker dies in the middle of a task.
enum class Crash { sigkill, sigsegv, abort, exit3 };
[[noreturn]] void crash_now(Crash how) {
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // no core file
  switch (how) {
    case Crash::sigkill:
      ::kill(::getpid(), SIGKILL);
      break;
    case Crash::sigsegv:
      std::signal(SIGSEGV, SIG_DFL);  // a sanitizer's or Catch's handler would turn it into an exit
      std::raise(SIGSEGV);
      break;
    case Crash::abort:
      std::signal(SIGABRT, SIG_DFL);
      std::abort();
    case Crash::exit3:
      ::_exit(3);
  }
  ::_exit(99);  // not reached
}
template <Crash How>
int crash_at_7(int x) {
  if (x == 7) {
    g_pid.value().store(::getpid());
    crash_now(How);
  }
  return x * x;
}
int kill_self(int) { crash_now(Crash::sigkill); }
// Every fifth item (4, 9, 14, ...) counts itself and kills its worker at once; the others answer with
// 256 KiB, so that the answer just before a crash is often still on its way when the worker dies.
std::string big_or_crash(int x) {
  if (x % 5 == 4) {
    std::atomic_ref<long>(g_count.value().raw()).fetch_add(1);
    crash_now(Crash::sigkill);
  }
  return std::string(std::size_t{256} << 10, static_cast<char>('a' + x % 26));
}
// Item 3 fails late with an exception, item 8 kills its worker early: map reports item 3's error.
int fail_3_late_crash_8_early(int x) {
  if (x == 3) {
    std::this_thread::sleep_for(300ms);
    throw pool_test::CustomError("item 3 failed");
  }
  if (x == 8) crash_now(Crash::sigkill);
  return x;
}
// Returns a large string right after announcing itself, so that a SIGKILL from the test lands while the
// worker is encoding or streaming the result through the pool's queue.
std::string big_result(int mib) {
  g_pid.value().store(::getpid());
  g_event.value().set();
  return std::string(static_cast<std::size_t>(mib) << 20, 'x');
}

// ---- helpers ------------------------------------------------------------------------------------------

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}
std::vector<int> squares(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(i * i);
  return v;
}

PoolOptions options(unsigned processes) {
  PoolOptions o;
  o.processes = processes;
  return o;
}

// "PoolWorker-17" -> 17 (with prefix "PoolWorker"); -1 if the name has another form.
long worker_number(const std::string& name, const std::string& prefix = "PoolWorker") {
  const std::string head = prefix + "-";
  if (name.rfind(head, 0) != 0 || name.size() == head.size()) return -1;
  for (std::size_t i = head.size(); i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stol(name.substr(head.size()));
}

struct ProcEntry {
  pid_t pid;
  pid_t ppid;
  char state;
  std::string comm;
};
/// Every process below this one (children, grandchildren, ...), from /proc: a pool may fork its workers
/// from a launcher process, so they are not necessarily our children.
std::vector<ProcEntry> descendants(pid_t root = ::getpid()) {
  std::vector<ProcEntry> all;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return {};
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    if (auto st = t::proc_stat(static_cast<pid_t>(pid)))
      all.push_back({static_cast<pid_t>(pid), st->ppid, st->state, st->comm});
  }
  ::closedir(d);
  std::vector<ProcEntry> out;
  std::set<pid_t> tree{root};
  for (bool grew = true; grew;) {
    grew = false;
    for (auto& p : all)
      if (tree.count(p.ppid) && !tree.count(p.pid)) {
        tree.insert(p.pid);
        out.push_back(p);
        grew = true;
      }
  }
  return out;
}
std::size_t descendant_zombies() {
  std::size_t n = 0;
  for (auto& p : descendants()) n += (p.state == 'Z' || p.state == 'X');
  return n;
}
std::vector<ProcEntry> live_workers(const std::string& prefix = "PoolWorker") {
  std::vector<ProcEntry> out;
  for (auto& p : descendants())
    if (p.state != 'Z' && p.state != 'X' && worker_number(p.comm, prefix) > 0) out.push_back(p);
  return out;
}

/// True once exactly n live workers named prefix-N are below us (a replacement may still be starting:
/// its name is set a moment after its fork, so this polls /proc for up to 5 s).
bool has_live_workers(std::size_t n, const std::string& prefix = "PoolWorker") {
  return t::wait_until([&] { return live_workers(prefix).size() == n; }, 5s, 5ms);
}

/// This process's resident set size in bytes (/proc/self/statm, second field).
std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// A result of a terminated pool must throw mproc::Error("... pool terminated ...") at once: not block,
/// not run into get()'s own timeout.
template <class Result>
void check_terminated(Result& r) {
  const auto t0 = t::Clock::now();
  try {
    (void)r.get(10s);
    FAIL("get() on a result of a terminated pool returned a value");
  } catch (const TimeoutError& e) {
    FAIL("get(10s) on a result of a terminated pool blocked until its timeout: " << e.what());
  } catch (const mproc::Error& e) {
    INFO("what(): " << e.what());
    CHECK(contains(e.what(), "pool terminated"));
  }
  CHECK(t::ms_since(t0) < 5000);  // at once; the bound is only a hang guard, below get()'s timeout
}

/// The crash-isolation acceptance for one way of dying: imap (chunksize 1) over 0..19 where item 7
/// kills its worker. Item 7 throws WorkerLost (exit code and words as given, the worker's pid and name in
/// the message) within 5 s; the 19 other items arrive; then 100 more tasks succeed.
template <Crash How>
void check_crash_is_isolated(int exitcode, const std::string& words) {
  Scoped<mproc::Value<int>> pid(g_pid, 0);
  Pool pool(2);
  const auto in = iota_vec(20);
  const auto t0 = t::Clock::now();
  auto it = pool.imap(&crash_at_7<How>, in);
  for (int i = 0; i < 20; ++i) {
    INFO("item " << i);
    if (i != 7) {
      auto v = it.next(10s);
      REQUIRE(v);
      CHECK(*v == i * i);
      continue;
    }
    try {
      (void)it.next(10s);
      FAIL("item 7 killed its worker but next() gave a value");
    } catch (const WorkerLost& e) {
      const std::string what = e.what();
      INFO("what(): " << what);
      CHECK(t::ms_since(t0) < 5000);
      CHECK(e.exitcode() == exitcode);
      CHECK(contains(what, words));
      REQUIRE(pid->load() > 0);
      CHECK(contains(what, std::to_string(pid->load())));
      CHECK(contains(what, "PoolWorker-"));
    }
  }
  CHECK_FALSE(it.next(10s));
  // The pool carries on: 100 later tasks, one per task (chunksize 1), and a map with the default chunks.
  auto later = pool.map_async(square, iota_vec(100), 1);
  CHECK(later.get(20s) == squares(100));
  CHECK(pool.map(square, iota_vec(100)) == squares(100));
  CHECK(has_live_workers(2));
}

}  // namespace

// =======================================================================================================
// map, starmap, imap, imap_unordered, apply
// =======================================================================================================

TEST_CASE("map of squares 0 to 999 with chunksize 0 1 7 100 and a function pointer", "[pool]") {
  Pool pool(3);
  const auto in = iota_vec(1000);
  for (std::size_t cs : {0u, 1u, 7u, 100u}) {
    INFO("chunksize " << cs);
    CHECK(pool.map(square, in, cs) == squares(1000));
    CHECK(pool.map(&square, in, cs) == squares(1000));
    auto r = pool.map_async(square, in, cs);
    CHECK(r.get(20s) == squares(1000));
    CHECK(r.successful());
  }
  // The tasks ran in the workers, not in the caller.
  for (pid_t p : pool.map(worker_pid, iota_vec(30), 1)) CHECK(p != ::getpid());
}

TEST_CASE("map accepts a captureless lambda and a function object type and other input ranges", "[pool]") {
  Pool pool(2);
  const auto in = iota_vec(1000);
  CHECK(pool.map([](int x) { return x * x; }, in) == squares(1000));
  CHECK(pool.map([](int x) { return x * x; }, in, 7) == squares(1000));
  CHECK(pool.map(Square{}, in) == squares(1000));
  CHECK(pool.map(Square{}, in, 100) == squares(1000));
  CHECK(pool.apply([](int a, int b) { return a * b; }, 6, 7) == 42);
  CHECK(pool.apply(Square{}, 12) == 144);
  // Inputs other than std::vector: a list, an iota view, strings.
  const std::list<int> lst(in.begin(), in.end());
  CHECK(pool.map(square, lst) == squares(1000));
  const auto view = std::views::iota(0, 1000);
  CHECK(pool.map(square, view, 9) == squares(1000));
  const std::vector<std::string> words{"", "a", "pool", "of", "workers"};
  CHECK(pool.map(length_of, words) == std::vector<std::size_t>{0, 1, 4, 2, 7});
}

TEST_CASE("map of an empty input returns an empty vector at once even while the workers are busy", "[pool]") {
  Scoped<mproc::Event> ev(g_event);
  Pool pool(2);
  // Both workers are held: an empty map must not need one.
  auto h1 = pool.apply_async(square_when_released, 1);
  auto h2 = pool.apply_async(square_when_released, 2);
  const std::vector<int> none;
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  const auto t0 = t::Clock::now();
  CHECK(pool.map(square, none).empty());
  CHECK(pool.map(square, none, 1).empty());
  CHECK(pool.map(square, none, 0, [&](std::size_t d, std::size_t n) { calls.emplace_back(d, n); }).empty());
  CHECK(pool.map_async(square, none).get(1s).empty());
  CHECK(pool.starmap(add, std::vector<std::tuple<int, int>>{}).empty());
  CHECK_FALSE(pool.imap(square, none).next(1s));
  CHECK_FALSE(pool.imap_unordered(square, none).next(1s));
  CHECK(t::ms_since(t0) < 5000);  // at once: a hang guard (both workers are held for up to 10 s)
  CHECK(calls.size() <= 1);
  if (!calls.empty()) CHECK(calls[0] == std::pair<std::size_t, std::size_t>{0, 0});
  ev->set();
  CHECK(h1.get(10s) == 1);
  CHECK(h2.get(10s) == 4);
}

TEST_CASE("starmap unpacks tuples into the task's arguments", "[pool]") {
  Pool pool(2);
  std::vector<std::tuple<int, int>> pairs;
  std::vector<int> expected;
  for (int i = 0; i < 500; ++i) {
    pairs.emplace_back(i, 2 * i);
    expected.push_back(3 * i);
  }
  CHECK(pool.starmap(add, pairs) == expected);
  CHECK(pool.starmap(add, pairs, 1) == expected);
  CHECK(pool.starmap(add, pairs, 7) == expected);
  CHECK(pool.starmap([](int a, int b) { return a + b; }, pairs) == expected);
  const std::vector<std::tuple<std::string, int, char>> triples{{"ab", 3, '-'}, {"x", 1, '+'}, {"", 0, ' '}};
  CHECK(pool.starmap(repeat, triples) == std::vector<std::string>{"ab-ab-ab", "x", ""});
}

TEST_CASE("imap yields results in input order also when later items finish first", "[pool]") {
  Pool pool(3);
  const auto in = iota_vec(40);
  std::vector<int> got;
  for (int v : pool.imap(square_early_is_slow, in)) got.push_back(v);
  CHECK(got == squares(40));
  got.clear();
  for (int v : pool.imap(square_early_is_slow, in, 4)) got.push_back(v);
  CHECK(got == squares(40));
  // next() until nullopt, on an rvalue range (moved into the imap object).
  auto it = pool.imap(square, std::vector<int>{3, 1, 2});
  CHECK(it.next(10s) == std::optional<int>(9));
  CHECK(it.next(10s) == std::optional<int>(1));
  CHECK(it.next() == std::optional<int>(4));
  CHECK_FALSE(it.next(10s));
}

TEST_CASE("imap next with a timeout throws TimeoutError while the item is not ready and then gets it",
          "[pool]") {
  Scoped<mproc::Event> ev(g_event);
  Pool pool(2);
  auto it = pool.imap(square_hold_zero, iota_vec(5));
  const auto t0 = t::Clock::now();
  CHECK_THROWS_AS(it.next(100ms), TimeoutError);
  const double el = t::ms_since(t0);
  CHECK(el >= 90);
  CHECK(el < 2000);
  ev->set();
  for (int i = 0; i < 5; ++i) CHECK(it.next(10s) == std::optional<int>(i * i));
  CHECK_FALSE(it.next(10s));
}

TEST_CASE("imap_unordered yields the same multiset in completion order", "[pool]") {
  Scoped<mproc::Event> ev(g_event);
  Pool pool(2);
  // Item 0 is held until we have seen another result: an ordered iteration would time out here.
  auto it = pool.imap_unordered(square_hold_zero, std::views::iota(0, 50));
  auto first = it.next(5s);
  REQUIRE(first);
  CHECK(*first != 0);
  ev->set();
  std::vector<int> got{*first};
  while (auto v = it.next(10s)) got.push_back(*v);
  std::sort(got.begin(), got.end());
  CHECK(got == squares(50));

  // Duplicates are kept; chunksize > 1; a range-for.
  const std::vector<int> dup{5, 3, 5, 3, 3, 0, 7};
  std::vector<int> got2;
  for (int v : pool.imap_unordered(square, dup, 2)) got2.push_back(v);
  std::sort(got2.begin(), got2.end());
  CHECK(got2 == std::vector<int>{0, 9, 9, 9, 25, 25, 49});
}

TEST_CASE("chunksize 0 picks Python's heuristic ceil of len over 4 times processes", "[pool]") {
  Pool pool(2);
  // 1001 items on 2 workers: chunks of ceil(1001 / 8) = 126. A chunk runs on one worker, so each block
  // of 126 items has one pid; the first two chunks run at once on the two workers (2 ms per item keeps
  // a chunk busy for 250 ms), so blocks 0 and 1 differ: a chunk of 125 or of 252 would break one rule.
  const auto pids = pool.map(pid_after_2ms, iota_vec(1001));
  REQUIRE(pids.size() == 1001);
  for (std::size_t b = 0; b < 1001; b += 126) {
    INFO("block starting at " << b);
    for (std::size_t i = b; i < std::min<std::size_t>(b + 126, 1001); ++i) CHECK(pids[i] == pids[b]);
  }
  CHECK(pids[0] != pids[126]);
  // An explicit chunksize is kept as given.
  const auto p7 = pool.map(pid_after_2ms, iota_vec(70), 7);
  for (std::size_t b = 0; b < 70; b += 7)
    for (std::size_t i = b; i < b + 7; ++i) CHECK(p7[i] == p7[b]);
  CHECK(p7[0] != p7[7]);
}

TEST_CASE("apply and apply_async pass arguments and results through the codec", "[pool]") {
  Scoped<mproc::Value<long>> count(g_count, 0, false);
  Pool pool(2);
  CHECK(pool.apply(add, 2, 3) == 5);
  CHECK(pool.apply(worker_pid, 0) != ::getpid());
  CHECK(pool.apply(make_point, std::string("pt"), std::vector<int>{1, 2, 3}) == pool_test::Point{6, "pt!"});
  auto r = pool.apply_async(make_point, std::string("async"), std::vector<int>{4, 5});
  static_assert(std::is_same_v<decltype(r), mproc::AsyncResult<pool_test::Point>>);
  CHECK(r.get(10s) == pool_test::Point{9, "async!"});
  CHECK(r.get() == pool_test::Point{9, "async!"});  // get() again gives the same value
  CHECK(r.ready());
  CHECK(r.successful());
  r.wait();
  CHECK(r.wait(0ms));
  CHECK(pool.apply(repeat, std::string("ab"), 2, ',') == "ab,ab");
  // AsyncResult<void>: a task returning nothing.
  auto v = pool.apply_async(count_only, 1);
  static_assert(std::is_same_v<decltype(v), mproc::AsyncResult<void>>);
  v.get();
  CHECK(v.successful());
  CHECK(count->load() == 1);
  pool.apply(count_only, 2);
  CHECK(count->load() == 2);
  auto vf = pool.apply_async(void_fails, 0);
  CHECK_THROWS_AS(vf.get(10s), RemoteError);
  CHECK_FALSE(vf.successful());
}

// =======================================================================================================
// Exceptions
// =======================================================================================================

TEST_CASE(
    "a task exception reaches get map and imap as RemoteError with type and message and the pool serves on",
    "[pool]") {
  Pool pool(2);
  auto check_remote = [](const RemoteError& e, const std::string& type, const std::string& message) {
    INFO("type_name(): " << e.type_name() << ", what(): " << e.what());
    CHECK(e.type_name() == type);
    CHECK(contains(e.what(), message));
  };
  // get()
  auto r = pool.apply_async(fail_on_3, 3);
  try {
    (void)r.get(10s);
    FAIL("no exception from get()");
  } catch (const RemoteError& e) {
    check_remote(e, "pool_test::CustomError", "three is not allowed");
  }
  CHECK(r.ready());
  CHECK_FALSE(r.successful());
  CHECK_THROWS_AS(r.get(), RemoteError);  // again
  try {
    (void)pool.apply(out_of_range_on_5, 5);
    FAIL("no exception from apply()");
  } catch (const RemoteError& e) {
    check_remote(e, "std::out_of_range", "index 5 is out of range");
  }
  // map and map_async
  const auto in = iota_vec(10);
  for (std::size_t cs : {0u, 1u, 4u}) {
    INFO("chunksize " << cs);
    try {
      (void)pool.map(fail_on_3, in, cs);
      FAIL("no exception from map()");
    } catch (const RemoteError& e) {
      check_remote(e, "pool_test::CustomError", "three is not allowed");
    }
    auto m = pool.map_async(out_of_range_on_5, in, cs);
    try {
      (void)m.get(10s);
      FAIL("no exception from map_async().get()");
    } catch (const RemoteError& e) {
      check_remote(e, "std::out_of_range", "index 5 is out of range");
    }
    CHECK_FALSE(m.successful());
  }
  try {
    (void)pool.starmap(fail_on_3, std::vector<std::tuple<int>>{{0}, {3}});
    FAIL("no exception from starmap()");
  } catch (const RemoteError& e) {
    check_remote(e, "pool_test::CustomError", "three is not allowed");
  }
  // imap: only the failed item throws; the next next() goes on with the next item.
  auto it = pool.imap(fail_on_3, in);
  for (int i = 0; i < 10; ++i) {
    INFO("imap item " << i);
    if (i == 3) {
      try {
        (void)it.next(10s);
        FAIL("no exception for item 3");
      } catch (const RemoteError& e) {
        check_remote(e, "pool_test::CustomError", "three is not allowed");
      }
    } else {
      CHECK(it.next(10s) == std::optional<int>(i * i));
    }
  }
  CHECK_FALSE(it.next(10s));
  // imap_unordered: 9 values and 1 RemoteError.
  auto un = pool.imap_unordered(fail_on_3, in);
  std::vector<int> got;
  int errors = 0;
  for (int k = 0; k < 11; ++k) {
    try {
      auto v = un.next(10s);
      if (!v) break;
      got.push_back(*v);
    } catch (const RemoteError& e) {
      ++errors;
      check_remote(e, "pool_test::CustomError", "three is not allowed");
    }
  }
  CHECK(errors == 1);
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<int>{0, 1, 4, 16, 25, 36, 49, 64, 81});
  // A non-standard exception type also arrives as RemoteError.
  CHECK_THROWS_AS(pool.map(throw_int_on_2, in), RemoteError);
  // The pool is usable afterwards.
  CHECK(pool.map(square, iota_vec(100)) == squares(100));
  CHECK(pool.apply(square, 9) == 81);
}

TEST_CASE("a result whose encoding throws half-way fails only its own task", "[pool]") {
  // The worker must drop the half-written bytes: left in the answer, they would be read as this task's
  // result and shift every later result of the chunk.
  mproc::Pool pool(1);
  auto f = [](long x) { return pool_test::HalfEncoded{x == 3 ? -1 : x * 10}; };
  auto it = pool.imap(f, std::vector<long>{1, 2, 3, 4, 5}, 5);  // one chunk holds all five
  for (long x = 1; x <= 5; ++x) {
    if (x == 3) {
      try {
        (void)it.next(10s);
        FAIL("no exception for the item whose result cannot be encoded");
      } catch (const mproc::RemoteError& e) {
        CHECK(std::string(e.what()).find("cannot encode a negative HalfEncoded") != std::string::npos);
      }
      continue;
    }
    auto r = it.next(10s);
    REQUIRE(r);
    CHECK(r->v == x * 10);
  }
  CHECK_FALSE(it.next(10s));
}

TEST_CASE("map throws the error of the first failing task in input order", "[pool]") {
  Pool pool(2);
  // Item 8 kills its worker at once; item 3 fails 300 ms later with an exception: map reports item 3.
  try {
    (void)pool.map(fail_3_late_crash_8_early, iota_vec(10), 1);
    FAIL("no exception from map()");
  } catch (const RemoteError& e) {
    CHECK(contains(e.what(), "item 3 failed"));
  } catch (const std::exception& e) {
    FAIL("map threw the wrong error (not item 3's): " << e.what());
  }
  auto r = pool.map_async(fail_3_late_crash_8_early, iota_vec(10), 1);
  CHECK_THROWS_AS(r.get(10s), RemoteError);
  CHECK(pool.map(square, iota_vec(50)) == squares(50));
}

// =======================================================================================================
// AsyncResult
// =======================================================================================================

TEST_CASE("get with 100ms on a slow task throws TimeoutError after about 100 ms", "[pool]") {
  Scoped<mproc::Event> ev(g_event);
  Pool pool(1);
  auto r = pool.apply_async(square_when_released, 5);
  auto t0 = t::Clock::now();
  CHECK_THROWS_AS(r.get(100ms), TimeoutError);
  double el = t::ms_since(t0);
  CHECK(el >= 90);
  CHECK(el < 2000);
  t0 = t::Clock::now();
  CHECK_FALSE(r.wait(100ms));
  el = t::ms_since(t0);
  CHECK(el >= 90);
  CHECK(el < 2000);
  CHECK_FALSE(r.ready());
  ev->set();
  CHECK(r.get(10s) == 25);  // the timed-out get did not spoil the result
  CHECK(r.ready());
}

TEST_CASE("successful before ready throws UsageError and after ready tells success from failure", "[pool]") {
  Scoped<mproc::Event> ev(g_event);
  Pool pool(2);
  auto ok = pool.apply_async(square_when_released, 4);
  auto bad = pool.apply_async(fail_on_3, 3);
  CHECK_FALSE(ok.ready());
  CHECK_THROWS_AS(ok.successful(), UsageError);
  bad.wait();
  CHECK(bad.ready());
  CHECK_FALSE(bad.successful());
  CHECK_THROWS_AS(ok.successful(), UsageError);  // still not ready
  ev->set();
  CHECK(ok.wait(10s));
  CHECK(ok.ready());
  CHECK(ok.successful());
  CHECK(ok.get() == 16);
  auto m = pool.map_async(square_when_released, iota_vec(3));
  CHECK(m.wait(10s));
  CHECK(m.successful());
}

TEST_CASE("an AsyncResult is usable from other threads of the parent", "[pool]") {
  Scoped<mproc::Event> ev(g_event);
  Pool pool(2);
  auto r = pool.apply_async(square_when_released, 6);
  auto m = pool.map_async(square, iota_vec(100));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 3; ++k)
    threads.emplace_back([&] {
      try {
        if (r.wait(10s) && r.get(10s) == 36 && r.successful() && m.get(10s) == squares(100)) ++good;
      } catch (...) {
      }
    });
  ev->set();
  for (auto& th : threads) th.join();
  CHECK(good == 3);
  // A result created in another thread, read in this one.
  std::optional<mproc::AsyncResult<int>> other;
  std::thread([&] { other.emplace(pool.apply_async(square, 11)); }).join();
  CHECK(other->get(10s) == 121);
}

// =======================================================================================================
// Crash isolation
// =======================================================================================================

TEST_CASE("a task that SIGKILLs its worker fails with WorkerLost and the pool carries on", "[pool]") {
  check_crash_is_isolated<Crash::sigkill>(-SIGKILL, "killed by SIGKILL");
}

TEST_CASE("a task that segfaults fails with WorkerLost and the pool carries on", "[pool]") {
  check_crash_is_isolated<Crash::sigsegv>(-SIGSEGV, "killed by SIGSEGV");
}

TEST_CASE("a task that calls abort fails with WorkerLost and the pool carries on", "[pool]") {
  check_crash_is_isolated<Crash::abort>(-SIGABRT, "killed by SIGABRT");
}

TEST_CASE("a task that calls _exit 3 fails with WorkerLost and the pool carries on", "[pool]") {
  check_crash_is_isolated<Crash::exit3>(3, "exited with code 3");
}

TEST_CASE("a crash fails exactly the tasks of the chunk the worker held", "[pool]") {
  Scoped<mproc::Value<int>> pid(g_pid, 0);
  Pool pool(2);
  // chunksize 5: items 5..9 form the chunk of item 7.
  auto it = pool.imap(&crash_at_7<Crash::sigkill>, iota_vec(20), 5);
  for (int i = 0; i < 20; ++i) {
    INFO("item " << i);
    if (i >= 5 && i <= 9) {
      CHECK_THROWS_AS(it.next(10s), WorkerLost);
    } else {
      CHECK(it.next(10s) == std::optional<int>(i * i));
    }
  }
  CHECK_FALSE(it.next(10s));
  // map and map_async report it; apply too.
  CHECK_THROWS_AS(pool.map(&crash_at_7<Crash::sigkill>, iota_vec(20)), WorkerLost);
  auto m = pool.map_async(&crash_at_7<Crash::sigkill>, iota_vec(20), 3);
  CHECK_THROWS_AS(m.get(10s), WorkerLost);
  CHECK_THROWS_AS(pool.apply(&crash_at_7<Crash::sigkill>, 7), WorkerLost);
  CHECK(pool.map(square, iota_vec(100), 1) == squares(100));
}

TEST_CASE("an answer sent just before the worker dies is delivered and the crashing task is not rerun",
          "[pool]") {
  Scoped<mproc::Value<long>> crashes(g_count, 0, false);
  Pool pool(1);  // one worker: the chunks behind the running one are queued (prefetched) at the same worker
  const std::vector<int> crashers{4, 9, 14, 19, 24, 29, 34, 39};
  for (int round = 0; round < 3; ++round) {  // the race it guards against does not show every time
    INFO("round " << round);
    const long crashes_before = crashes->load();
    auto it = pool.imap(big_or_crash, iota_vec(40));
    std::vector<int> lost, wrong;
    for (int i = 0; i < 40; ++i) {
      try {
        auto v = it.next(10s);
        if (!v || v->size() != (std::size_t{256} << 10) || (*v)[0] != static_cast<char>('a' + i % 26))
          wrong.push_back(i);
      } catch (const WorkerLost&) {
        lost.push_back(i);
      }
    }
    CHECK_FALSE(it.next(10s));
    INFO("WorkerLost for items " << ::Catch::Detail::stringify(lost));
    CHECK(lost == crashers);  // exactly the tasks that crashed: no answer lost on its way to the parent
    CHECK(wrong.empty());
    CHECK(crashes->load() - crashes_before == 8);  // a task that crashed its worker is not run again
  }
}

TEST_CASE("100 crashes in a row on a Pool of 2 leave 2 live workers and no zombie", "[pool]") {
  Scoped<mproc::Barrier> barrier(g_barrier, 2);
  Pool pool(2);
  const auto t0 = t::Clock::now();
  int lost = 0;
  for (int i = 0; i < 50; ++i) {  // one after the other
    try {
      (void)pool.apply(kill_self, i);
    } catch (const WorkerLost& e) {
      lost += (e.exitcode() == -SIGKILL);
    }
  }
  std::vector<mproc::AsyncResult<int>> burst;  // then 50 at once
  for (int i = 0; i < 50; ++i) burst.push_back(pool.apply_async(kill_self, i));
  for (auto& r : burst) {
    try {
      (void)r.get(10s);
    } catch (const WorkerLost& e) {
      lost += (e.exitcode() == -SIGKILL);
    }
  }
  CHECK(lost == 100);
  INFO("100 crashes took " << t::ms_since(t0) << " ms");
  CHECK(t::ms_since(t0) < 40000);  // a hang guard (runs take 1-2 s, loaded), below the 50 s watchdog

  // Two live workers: two tasks that can only pass the Barrier(2) together, on two distinct workers.
  auto a = pool.apply_async(whoami_at_barrier, 0);
  auto b = pool.apply_async(whoami_at_barrier, 1);
  const auto wa = a.get(15s), wb = b.get(15s);
  CHECK(std::get<0>(wa) != std::get<0>(wb));
  // Replacements continue the numbering: after 100 replacements the newest is PoolWorker-102.
  const long na = worker_number(std::get<1>(wa)), nb = worker_number(std::get<1>(wb));
  INFO("live workers: " << std::get<1>(wa) << ", " << std::get<1>(wb));
  CHECK(na > 0);
  CHECK(nb > 0);
  CHECK(std::max(na, nb) == 102);
  CHECK(has_live_workers(2));
  CHECK(t::wait_until([] { return descendant_zombies() == 0; }, 2s));
  CHECK(mproc::count_zombies() == 0);
  // Still serving.
  CHECK(pool.map(square, iota_vec(100)) == squares(100));
}

TEST_CASE("a worker SIGKILLed while it sends a large result does not wedge the pool", "[pool]") {
  Scoped<mproc::Value<int>> pid(g_pid, 0);
  Scoped<mproc::Event> ev(g_event);
  Pool pool(2);
  int lost = 0, delivered = 0;
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    ev->clear();
    auto r = pool.apply_async(big_result, 64);
    REQUIRE(ev->wait(10s));
    const pid_t victim = pid->load();
    REQUIRE(victim > 0);
    ::kill(victim, SIGKILL);  // mid-encode or mid-put of the 64 MiB result, most of the time
    try {
      const auto s = r.get(15s);
      CHECK(s.size() == (std::size_t{64} << 20));  // it got through whole before the kill
      ++delivered;
    } catch (const WorkerLost& e) {
      CHECK(e.exitcode() == -SIGKILL);
      ++lost;
    }
    CHECK(pool.apply(square, round) == round * round);
  }
  INFO("lost " << lost << ", delivered " << delivered);
  CHECK(lost + delivered == 5);
  auto later = pool.map_async(square, iota_vec(100), 1);
  CHECK(later.get(20s) == squares(100));
  CHECK(has_live_workers(2));
}

// =======================================================================================================
// maxtasksperchild, initializer, task_timeout
// =======================================================================================================

TEST_CASE("maxtasksperchild 10 with 3 workers and 100 tasks uses more than 3 workers each initialized",
          "[pool]") {
  mproc::Value<int> inits(0);
  PoolOptions o = options(3);
  o.maxtasksperchild = 10;
  o.initializer = [inits]() mutable {
    auto lock = inits.get_lock();
    std::lock_guard<mproc::Lock> g(lock);
    inits.store(inits.load() + 1);
    g_init_pid = ::getpid();  // in this worker's memory only
  };
  Pool pool(o);
  const auto out = pool.map(square_pid_initialized, iota_vec(100), 1);
  REQUIRE(out.size() == 100);
  std::map<pid_t, int> per_pid;
  for (int i = 0; i < 100; ++i) {
    INFO("item " << i);
    CHECK(std::get<0>(out[static_cast<std::size_t>(i)]) == i * i);
    CHECK(std::get<2>(out[static_cast<std::size_t>(i)]));  // the initializer ran in the worker that ran it
    ++per_pid[std::get<1>(out[static_cast<std::size_t>(i)])];
  }
  INFO(per_pid.size() << " distinct workers");
  CHECK(per_pid.size() > 3);
  CHECK(per_pid.size() >= 10);  // 100 tasks at most 10 per worker
  for (auto& [p, n] : per_pid) CHECK(n <= 10);
  CHECK(inits.load() >= static_cast<int>(per_pid.size()));
  CHECK(t::wait_until([] { return descendant_zombies() == 0; }, 2s));
}

// The limit is 1 s, not less: the same pool then runs fast tasks under it, and a task's clock starts
// when its chunk is sent, so the first ones include a freshly forked replacement worker's start-up.
TEST_CASE("task_timeout 1s kills a task sleeping 10 s with TimeoutError before it ends and the pool serves on",
          "[pool]") {
  Scoped<mproc::Value<int>> pid(g_pid, 0);
  Scoped<mproc::Event> ev(g_event);
  PoolOptions o = options(2);
  o.task_timeout = 1s;
  Pool pool(o);
  const auto t0 = t::Clock::now();
  auto r = pool.apply_async(announce_then_sleep_10s, 1);
  try {
    (void)r.get(15s);  // longer than the task's 10 s: a TimeoutError can only be task_timeout's
    FAIL("the task outlived task_timeout");
  } catch (const TimeoutError& e) {
    INFO("what(): " << e.what());
    CHECK(contains(e.what(), "task timed out"));
    const double el = t::ms_since(t0);
    CHECK(el >= 950);     // the limit was waited for
    CHECK(el < 10000);    // and the task was killed before its sleep ended (a hang guard otherwise)
  }
  CHECK(r.ready());
  CHECK_FALSE(r.successful());
  const pid_t victim = pid->load();
  REQUIRE(victim > 0);
  CHECK(t::wait_until([&] { return t::is_gone(victim); }, 2s));  // killed and reaped
  // Fast tasks pass under the limit; the pool has two workers again and keeps serving.
  CHECK(pool.map(square, iota_vec(200), 1) == squares(200));
  CHECK(pool.apply(square_after_10ms, 3) == 9);
  CHECK(has_live_workers(2));
  // A timed-out task in a map fails the map with TimeoutError.
  ev->clear();
  CHECK_THROWS_AS(pool.map(announce_then_sleep_10s, iota_vec(1)), TimeoutError);
}

TEST_CASE("task_timeout applies per task so a chunk of 8 tasks of 100 ms passes a 300 ms limit", "[pool]") {
  PoolOptions o = options(1);
  o.task_timeout = 300ms;
  Pool pool(o);
  // One chunk of 8 tasks: 800 ms in all, 100 ms each; its limit is 8 x 300 ms.
  CHECK(pool.map(sleep_100ms_square, iota_vec(8), 8) == squares(8));
}

// =======================================================================================================
// close, terminate, join, destructor
// =======================================================================================================

TEST_CASE("terminate with 10000 queued 100 ms tasks returns within 5 s and outstanding results fail",
          "[pool]") {
  Scoped<mproc::Event> started(g_event);
  Pool pool(2);
  auto big = pool.map_async(announce_then_sleep_100ms, iota_vec(10000), 1);
  std::vector<mproc::AsyncResult<int>> singles;
  for (int i = 0; i < 20; ++i) singles.push_back(pool.apply_async(announce_then_sleep_100ms, i));
  auto it = pool.imap(announce_then_sleep_100ms, iota_vec(100));
  CHECK_THROWS_AS(it.next(1ms), TimeoutError);  // its first chunks are submitted, queued behind the map
  REQUIRE(started->wait(10s));                  // the workers are busy
  const auto t0 = t::Clock::now();
  pool.terminate();
  const double el = t::ms_since(t0);
  CHECK(el < 5000);
  check_terminated(big);
  check_terminated(singles.front());
  check_terminated(singles.back());
  // imap: results that came before terminate() may still be handed out; then "pool terminated".
  bool imap_failed = false;
  for (int k = 0; k < 101 && !imap_failed; ++k) {
    try {
      auto v = it.next(5s);
      if (!v) FAIL("imap ended without an error after terminate()");
    } catch (const TimeoutError& e) {
      FAIL("imap next(5s) blocked after terminate(): " << e.what());
    } catch (const mproc::Error& e) {
      CHECK(contains(e.what(), "pool terminated"));
      imap_failed = true;
    }
  }
  CHECK(imap_failed);
  const auto t1 = t::Clock::now();
  pool.join();
  CHECK(t::ms_since(t1) < 5000);
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));
  CHECK(mproc::count_zombies() == 0);
  CHECK_THROWS_AS(pool.apply(square, 1), UsageError);
  CHECK_THROWS_AS(pool.apply_async(square, 1), UsageError);
}

TEST_CASE("a Pool destroyed without close while tasks run does not hang and leaves no process", "[pool]") {
  Scoped<mproc::Event> started(g_event);
  Scoped<mproc::Value<int>> pid(g_pid, 0);
  std::optional<Pool> pool(std::in_place, 2u);
  std::optional<mproc::AsyncResult<std::vector<int>>> busy, queued;
  busy.emplace(pool->map_async(announce_then_sleep_10s, iota_vec(10), 1));  // both workers sleep 10 s
  queued.emplace(pool->map_async(sleep_100ms_square, iota_vec(1000), 1));   // and 1000 tasks wait
  REQUIRE(started->wait(10s));
  CHECK(has_live_workers(2));
  busy.reset();
  queued.reset();
  const auto t0 = t::Clock::now();
  pool.reset();  // ~Pool without close(): terminate()
  CHECK(t::ms_since(t0) < 5000);
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));
  CHECK(mproc::count_zombies() == 0);
  CHECK(t::raw_zombies() == 0);
}

TEST_CASE("an AsyncResult that outlives its Pool throws pool terminated instead of blocking", "[pool]") {
  Scoped<mproc::Event> started(g_event);
  Scoped<mproc::Value<int>> pid(g_pid, 0);
  std::optional<mproc::AsyncResult<int>> r;
  const auto t0 = t::Clock::now();
  {
    Pool pool(2);
    r.emplace(pool.apply_async(announce_then_sleep_10s, 1));
    REQUIRE(started->wait(10s));
  }
  CHECK(t::ms_since(t0) < 8000);
  check_terminated(*r);
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));
}

TEST_CASE("join before close throws UsageError and close then join waits for the queued tasks", "[pool]") {
  Pool pool(2);
  auto r = pool.map_async(square_after_10ms, iota_vec(40), 1);
  auto one = pool.apply_async(square_after_10ms, 12);
  CHECK_THROWS_AS(pool.join(), UsageError);
  pool.close();
  const auto t0 = t::Clock::now();
  pool.join();
  CHECK(t::ms_since(t0) < 10000);
  // Everything queued before close() was done before join() returned.
  CHECK(r.ready());
  CHECK(one.ready());
  CHECK(r.get(1s) == squares(40));
  CHECK(one.get(1s) == 144);
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));  // the workers have exited
}

TEST_CASE("every submitting call after close or terminate throws UsageError", "[pool]") {
  const auto in = iota_vec(5);
  const std::vector<std::tuple<int, int>> pairs{{1, 2}};
  auto check_all = [&](Pool& pool) {
    CHECK_THROWS_AS(pool.apply(square, 1), UsageError);
    CHECK_THROWS_AS(pool.apply_async(square, 1), UsageError);
    CHECK_THROWS_AS(pool.map(square, in), UsageError);
    CHECK_THROWS_AS(pool.map(square, in, 1, [](std::size_t, std::size_t) {}), UsageError);
    CHECK_THROWS_AS(pool.map_async(square, in), UsageError);
    CHECK_THROWS_AS(pool.imap(square, in), UsageError);
    CHECK_THROWS_AS(pool.imap_unordered(square, in), UsageError);
    CHECK_THROWS_AS(pool.starmap(add, pairs), UsageError);
  };
  {
    Pool pool(2);
    CHECK(pool.apply(square, 3) == 9);
    pool.close();
    check_all(pool);
    pool.join();
    check_all(pool);
  }
  {
    Pool pool(2);
    pool.terminate();
    check_all(pool);
    pool.join();
  }
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));
}

// =======================================================================================================
// Scale, laziness, progress
// =======================================================================================================

TEST_CASE("Pool of 200 workers maps 1000 items to the sum of squares 332833500", "[pool]") {
  Pool pool(200);
  const auto out = pool.map(square, iota_vec(1000));
  REQUIRE(out.size() == 1000);
  CHECK(std::accumulate(out.begin(), out.end(), std::int64_t{0}) == 332833500);
  CHECK(out == squares(1000));
  CHECK(has_live_workers(200));
}

TEST_CASE("imap over iota of 10 million takes 100 results and stops promptly with flat memory", "[pool]") {
  Scoped<mproc::Value<long>> count(g_count, 0, false);
  const std::size_t rss0 = rss_bytes();
  std::size_t rss1 = 0;
  double stop_ms = 0;
  const auto t0 = t::Clock::now();
  {
    Pool pool(2);
    t::Clock::time_point t_break;
    {
      auto it = pool.imap(count_and_double, std::views::iota(0, 10'000'000));
      int k = 0;
      bool ordered = true;
      for (int v : it) {
        ordered = ordered && v == 2 * k;
        if (++k == 100) break;
      }
      CHECK(k == 100);
      CHECK(ordered);
      rss1 = rss_bytes();
      t_break = t::Clock::now();
    }  // the imap object goes: no more input is read
    stop_ms = t::ms_since(t_break);
  }
  const double total_ms = t::ms_since(t0);
  const long executed = count->load();
  INFO("rss grew by " << (static_cast<double>(rss1) - static_cast<double>(rss0)) / 1048576.0 << " MiB; "
                      << executed << " tasks ran; imap destroyed in " << stop_ms << " ms; " << total_ms
                      << " ms in all");
  CHECK(rss1 < rss0 + (std::size_t{100} << 20));
  CHECK(executed >= 100);
  CHECK(executed < 100'000);  // bounded chunks in flight, not the whole input
  CHECK(stop_ms < 15000);   // hang guards: destroying the imap must not drain 10 million items,
  CHECK(total_ms < 40000);  // and the case must stay below the 50 s watchdog
}

TEST_CASE("map on_progress reports non-decreasing done ending with total total in the calling thread",
          "[pool]") {
  // Progress must be reported while the map runs, not only at its end. Items 60..119 wait for g_event
  // and items 120..199 for g_event2, and only on_progress sets them: g_event on its first call (done is
  // then in 1..60: nothing past item 59 can be done yet), g_event2 on its next call (done is then larger,
  // and at most 120). So on_progress sees at least three distinct values of done: those two, then 200.
  // Without calls along the way the held tasks give up after 10 s and the map fails with RemoteError.
  Scoped<mproc::Event> gate1(g_event);
  Scoped<mproc::Event> gate2(g_event2);
  Pool pool(2);
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  std::set<std::thread::id> threads;
  auto progress = [&](std::size_t done, std::size_t total) {
    calls.emplace_back(done, total);
    threads.insert(std::this_thread::get_id());
  };
  std::vector<std::size_t> opened_at;  // done when on_progress set g_event, then g_event2
  auto progress_opening_gates = [&](std::size_t done, std::size_t total) {
    progress(done, total);
    if (opened_at.size() < 2 && done < total) {
      opened_at.push_back(done);
      (opened_at.size() == 1 ? *gate1 : *gate2).set();
    }
  };
  const auto out = pool.map(square_in_stages, iota_vec(200), 5, progress_opening_gates);
  CHECK(out == squares(200));
  REQUIRE_FALSE(calls.empty());
  std::set<std::size_t> distinct;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    INFO("call " << i << ": (" << calls[i].first << ", " << calls[i].second << ")");
    CHECK(calls[i].second == 200);
    CHECK(calls[i].first <= 200);
    if (i > 0) CHECK(calls[i].first >= calls[i - 1].first);
    distinct.insert(calls[i].first);
  }
  CHECK(calls.back() == std::pair<std::size_t, std::size_t>{200, 200});
  REQUIRE(opened_at.size() == 2);
  CHECK(opened_at[0] > 0);
  CHECK(opened_at[0] <= 60);
  CHECK(opened_at[1] > opened_at[0]);
  CHECK(opened_at[1] <= 120);
  CHECK(distinct.size() >= 3);  // by construction (see above): progress is reported along the way
  CHECK(threads == std::set<std::thread::id>{std::this_thread::get_id()});
  // The default chunksize too.
  calls.clear();
  CHECK(pool.map(square, iota_vec(1000), 0, progress) == squares(1000));
  REQUIRE_FALSE(calls.empty());
  CHECK(calls.back() == std::pair<std::size_t, std::size_t>{1000, 1000});
  for (std::size_t i = 1; i < calls.size(); ++i) CHECK(calls[i].first >= calls[i - 1].first);
}

// =======================================================================================================
// Names, fork safety
// =======================================================================================================

TEST_CASE("worker names PoolWorker-1 and PoolWorker-2 show in proc comm and current_process", "[pool]") {
  Scoped<mproc::Barrier> barrier(g_barrier, 2);
  Pool pool(2);
  auto a = pool.apply_async(whoami_at_barrier, 0);
  auto b = pool.apply_async(whoami_at_barrier, 1);
  const auto wa = a.get(15s), wb = b.get(15s);
  std::set<std::string> comms{std::get<1>(wa), std::get<1>(wb)};
  CHECK(comms == std::set<std::string>{"PoolWorker-1", "PoolWorker-2"});
  for (const auto& w : {wa, wb}) {
    INFO("worker " << std::get<0>(w));
    CHECK(std::get<2>(w) == std::get<1>(w));                // current_process().name
    CHECK(std::get<3>(w));                                  // daemon
    CHECK(t::read_comm(std::get<0>(w)) == std::get<1>(w));  // what ps and top show
  }
  CHECK(has_live_workers(2));
}

TEST_CASE("name_prefix names the workers and a replacement continues the numbering", "[pool]") {
  PoolOptions o = options(1);
  o.name_prefix = "Cruncher";
  Pool pool(o);
  const auto first = pool.apply(whoami, 0);
  CHECK(std::get<1>(first) == "Cruncher-1");
  CHECK(t::read_comm(std::get<0>(first)) == "Cruncher-1");
  try {
    (void)pool.apply(kill_self, 0);
    FAIL("no WorkerLost");
  } catch (const WorkerLost& e) {
    CHECK(contains(e.what(), "Cruncher-1"));
    CHECK(contains(e.what(), std::to_string(std::get<0>(first))));
  }
  const auto second = pool.apply(whoami, 0);
  CHECK(std::get<1>(second) == "Cruncher-2");
  CHECK(std::get<0>(second) != std::get<0>(first));
  CHECK(has_live_workers(1, "Cruncher"));
}

TEST_CASE("replacement workers start and run while parent threads allocate", "[pool]") {
#if MPROC_TEST_ASAN
  // As in test_process.cpp: GCC 12's ASan allocator is not fork-safe with allocating threads.
  WARN("skipped under ASan: its allocator is not fork-safe with allocating threads");
  return;
#endif
  std::atomic<bool> stop{false};
  std::atomic<long> rounds{0};
  std::vector<std::thread> threads;
  t::ScopeExit stop_threads([&] {
    stop = true;
    for (auto& th : threads) th.join();
  });
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&stop, &rounds, i] {
      std::vector<std::string> keep;
      while (!stop.load(std::memory_order_relaxed)) {
        keep.push_back(std::string(64 + i, 'a') + std::to_string(rounds.load()));
        if (keep.size() > 32) keep.clear();
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
    });
  REQUIRE(t::wait_until([&] { return rounds.load() > 10000; }, 10s));
  PoolOptions o = options(2);
  o.maxtasksperchild = 1;  // every task needs a fresh worker, forked while the threads allocate
  o.initializer = [] {
    std::vector<std::string> v(100, std::string(100, 'i'));  // the new worker allocates at once
    if (v.back().size() != 100) std::abort();
  };
  Pool pool(o);
  auto r = pool.map_async(square, iota_vec(40), 1);
  CHECK(r.get(30s) == squares(40));
  CHECK(t::wait_until([] { return descendant_zombies() == 0; }, 2s));
}

// =======================================================================================================
// mproc::async
// =======================================================================================================

TEST_CASE("mproc::async returns the value of a capturing lambda computed in a fresh child", "[pool][async]") {
  const std::string greeting = "hello";
  const int base = 40;
  auto r = mproc::async(
      [greeting, base](int x) {
        return std::make_tuple(greeting + " " + std::to_string(base + x), ::getpid());
      },
      2);
  static_assert(std::is_same_v<decltype(r), mproc::AsyncResult<std::tuple<std::string, pid_t>>>);
  const auto [text, child] = r.get(10s);
  CHECK(text == "hello 42");
  CHECK(child != ::getpid());
  CHECK(r.ready());
  CHECK(r.successful());
  // A void call, and one that takes a while: get(100ms) times out.
  auto pipe = t::make_pipe();
  auto v = mproc::async([fd = pipe.w.get()] { t::write_str(fd, "ran"); });
  static_assert(std::is_same_v<decltype(v), mproc::AsyncResult<void>>);
  v.get(10s);
  pipe.w.reset();
  CHECK(t::read_to_eof(pipe.r.get(), 5s) == "ran");
  auto slow = mproc::async([] {
    std::this_thread::sleep_for(500ms);
    return 7;
  });
  const auto t0 = t::Clock::now();
  CHECK_THROWS_AS(slow.get(100ms), TimeoutError);
  CHECK(t::ms_since(t0) < 2000);
  CHECK_THROWS_AS(slow.successful(), UsageError);
  CHECK(slow.get(10s) == 7);
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));
}

TEST_CASE("mproc::async rethrows an exception from the child as RemoteError", "[pool][async]") {
  const std::string what = "bad input 17";
  auto r = mproc::async([what]() -> int { throw pool_test::CustomError(what); });
  try {
    (void)r.get(10s);
    FAIL("no exception");
  } catch (const RemoteError& e) {
    CHECK(e.type_name() == "pool_test::CustomError");
    CHECK(contains(e.what(), "bad input 17"));
  }
  CHECK_FALSE(r.successful());
  auto v = mproc::async([] { throw std::out_of_range("void and out of range"); });
  CHECK_THROWS_AS(v.get(10s), RemoteError);
}

TEST_CASE("mproc::async reports a crashed child as WorkerLost naming the pid and the signal or code",
          "[pool][async]") {
  struct Case {
    Crash how;
    int exitcode;
    std::string words;
  };
  for (const Case& c :
       {Case{Crash::sigkill, -SIGKILL, "killed by SIGKILL"},
        Case{Crash::sigsegv, -SIGSEGV, "killed by SIGSEGV"},
        Case{Crash::abort, -SIGABRT, "killed by SIGABRT"}, Case{Crash::exit3, 3, "exited with code 3"}}) {
    INFO(c.words);
    auto pipe = t::make_pipe();
    auto r = mproc::async([fd = pipe.w.get(), how = c.how]() -> int {
      const std::string me = std::to_string(::getpid());
      t::write_str(fd, me);
      crash_now(how);
    });
    pipe.w.reset();
    const std::string child = t::read_to_eof(pipe.r.get(), 10s);
    REQUIRE_FALSE(child.empty());
    const auto t0 = t::Clock::now();
    try {
      (void)r.get(10s);
      FAIL("no WorkerLost");
    } catch (const WorkerLost& e) {
      INFO("what(): " << e.what());
      CHECK(t::ms_since(t0) < 5000);
      CHECK(e.exitcode() == c.exitcode);
      CHECK(contains(e.what(), c.words));
      CHECK(contains(e.what(), child));
    }
  }
  CHECK(t::wait_until([] { return descendants().empty(); }, 2s));
  CHECK(mproc::count_zombies() == 0);
}
