// tests/test_eintr.cpp — the EINTR storm (issue 7, item 4): "every blocking call restarts on EINTR"
// (API.md, general rules), and a timed call keeps its deadline however many signals arrive.
//
// A SignalStorm installs a SIGUSR1 handler WITHOUT SA_RESTART (so every slow system call it interrupts
// fails with EINTR instead of being restarted by the kernel) and starts a thread that sends SIGUSR1 to
// the test's main thread every millisecond with tgkill (a signal sent to the process could be taken by
// any thread that does not block it; the storm thread blocks it, and mproc's own threads are not the
// ones under test). Then each blocking call runs on the main thread: Process::join() and join(timeout),
// Queue::get() and get(timeout) (also a streamed item, and put(timeout) on a full queue), Queue::put of
// an item larger than the ring, Connection::recv (a message of many records, and over a plain pipe),
// Connection::poll and mproc::wait with a timeout, Lock::acquire(timeout) on a lock a child holds, then
// acquire(),
// Semaphore/Condition/Barrier timed waits, Event::wait(timeout), AsyncResult::get() and get(timeout)
// (mproc::async and Pool::apply_async, then Pool::close/join), ChildProcess::wait() and wait(timeout)
// (and write/read_all_stdout through cat).
//
// Every call must return the right result; a timed call that runs out must take at least its timeout
// and at most timeout + 1 s (a call that returned early on EINTR, or restarted its full timeout on
// every signal, fails); and the handler must have run many times during the call (counted), so the
// test proves the call was really interrupted. Children delay their part with a short sleep: that only
// opens the window in which the parent is blocked under the storm, nothing waits on the sleep itself.
#include "catch.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

namespace t = mproc_test;
using namespace std::chrono_literals;

namespace {

std::atomic<long> g_hits{0};  // SIGUSR1 handler runs (lock-free: fine in a handler)
static_assert(std::atomic<long>::is_always_lock_free);

extern "C" void count_usr1(int) { g_hits.fetch_add(1, std::memory_order_relaxed); }

/// SIGUSR1 every `period` to the thread that created the storm, handled without SA_RESTART, until the
/// storm is destroyed; then the old handler and signal mask are back.
class SignalStorm {
 public:
  explicit SignalStorm(std::chrono::microseconds period = 1ms) : target_(static_cast<pid_t>(::gettid())) {
    struct sigaction sa {};
    sa.sa_handler = count_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: interrupted system calls fail with EINTR
    REQUIRE(::sigaction(SIGUSR1, &sa, &old_action_) == 0);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    REQUIRE(::pthread_sigmask(SIG_UNBLOCK, &usr1, &old_mask_) == 0);
    const pid_t pid = ::getpid();
    thread_ = std::thread([this, period, pid, usr1] {
      ::pthread_sigmask(SIG_BLOCK, &usr1, nullptr);  // never the storm thread itself
      while (!stop_.load()) {
        if (::syscall(SYS_tgkill, pid, target_, SIGUSR1) == 0) sent_.fetch_add(1);
        std::this_thread::sleep_for(period);
      }
    });
  }
  ~SignalStorm() {
    stop_.store(true);
    thread_.join();
    // No SIGUSR1 can be pending now (the last one was handled when join returned to user mode); make
    // sure anyway before the old (maybe default: fatal) disposition comes back.
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    timespec zero{0, 0};
    while (::sigtimedwait(&usr1, nullptr, &zero) == SIGUSR1) {
    }
    ::sigaction(SIGUSR1, &old_action_, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SignalStorm(const SignalStorm&) = delete;
  SignalStorm& operator=(const SignalStorm&) = delete;
  long sent() const { return sent_.load(); }

 private:
  pid_t target_;
  struct sigaction old_action_ {};
  sigset_t old_mask_{};
  std::atomic<bool> stop_{false};
  std::atomic<long> sent_{0};
  std::thread thread_;
};

/// Time and handler runs since construction.
class Span {
 public:
  Span() : t0_(t::Clock::now()), h0_(g_hits.load()) {}
  double ms() const { return t::ms_since(t0_); }
  long hits() const { return g_hits.load() - h0_; }

 private:
  t::Clock::time_point t0_;
  long h0_;
};

// The call was interrupted many times (a 1 ms storm over a call of >= 300 ms: about 300 signals; the
// bound is low for a loaded machine or a sanitizer build, where the storm thread wakes up late).
constexpr long kMinHits = 20;

/// A timed call that ran out: no earlier than its timeout, no later than timeout + 1 s, interrupted.
void check_deadline(const Span& s, std::chrono::milliseconds timeout) {
  const double ms = s.ms();
  INFO("returned after " << ms << " ms for a timeout of " << timeout.count() << " ms, with " << s.hits()
                         << " signals handled meanwhile");
  CHECK(ms >= static_cast<double>(timeout.count()));
  CHECK(ms <= static_cast<double>(timeout.count() + 1000));
  CHECK(s.hits() >= kMinHits);
}

/// A blocking call that completed: it was interrupted many times on the way.
void check_interrupted(const Span& s) {
  INFO("took " << s.ms() << " ms with " << s.hits() << " signals handled meanwhile");
  CHECK(s.hits() >= kMinHits);
}

constexpr auto kTimeout = 300ms;  // the timeout of every timed call that is meant to run out
constexpr auto kDelay = 300ms;    // how long a child waits before doing what the parent waits for

}  // namespace

TEST_CASE("EINTR storm: Process::join waits for a child that works 300 ms and exits 7", "[eintr]") {
  SignalStorm storm;
  mproc::Process p([] {
    std::this_thread::sleep_for(kDelay);
    mproc::exit(7);
  });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  Span s;
  p.join();
  check_interrupted(s);
  CHECK(p.exitcode() == std::optional<int>(7));
  CHECK_FALSE(p.is_alive());
}

TEST_CASE("EINTR storm: Process::join with a timeout on a long child keeps its deadline", "[eintr]") {
  mproc::Event go;
  mproc::Process p([go]() mutable { go.wait(10s); });
  SignalStorm storm;
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  Span s;
  CHECK_FALSE(p.join(kTimeout));
  check_deadline(s, kTimeout);
  CHECK(p.is_alive());
  go.set();
  Span s2;
  CHECK(p.join(10s));
  CHECK(s2.ms() < 5000);
  CHECK(p.exitcode() == std::optional<int>(0));
}

TEST_CASE("EINTR storm: Queue get with a timeout on an empty queue throws Empty on time", "[eintr]") {
  mproc::Queue<int> q;
  mproc::Queue<int> full(1);
  full.put(1);
  SignalStorm storm;
  {
    Span s;
    CHECK_THROWS_AS(q.get(kTimeout), mproc::Empty);
    check_deadline(s, kTimeout);
  }
  {
    Span s;
    CHECK_THROWS_AS(full.put(2, kTimeout), mproc::Full);
    check_deadline(s, kTimeout);
  }
  CHECK(full.get(1s) == 1);
}

TEST_CASE("EINTR storm: Queue get returns items a child puts later, a small one and a streamed one",
          "[eintr]") {
  mproc::Queue<std::string> q(0, mproc::QueueOptions{64 << 10});  // 64 KiB ring: 8 MiB streams through
  const std::string big(std::size_t{8} << 20, 'q');
  mproc::Process p(
      [](mproc::Queue<std::string> qq, std::string b) {
        std::this_thread::sleep_for(kDelay);
        qq.put("later");
        qq.put(b);
      },
      q, big);
  SignalStorm storm;
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  Span s;
  CHECK(q.get() == "later");
  check_interrupted(s);
  Span s2;
  const std::string got = q.get(10s);
  INFO("the streamed item took " << s2.ms() << " ms, " << s2.hits() << " signals");
  CHECK(got.size() == big.size());
  CHECK(got == big);
  p.join();
  CHECK(p.exitcode() == std::optional<int>(0));
}

TEST_CASE("EINTR storm: Queue put of a streamed item blocks until a child has taken it all", "[eintr]") {
  mproc::Queue<std::string> q(0, mproc::QueueOptions{64 << 10});  // the 8 MiB item cannot fit: put waits
  mproc::Queue<std::size_t> sizes;
  const std::string big(std::size_t{8} << 20, 'p');
  mproc::Process p(
      [](mproc::Queue<std::string> in, mproc::Queue<std::size_t> out) {
        std::this_thread::sleep_for(kDelay);
        out.put(in.get().size());
      },
      q, sizes);
  SignalStorm storm;
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  Span s;
  q.put(big);
  check_interrupted(s);
  CHECK(sizes.get(10s) == big.size());
  p.join();
  CHECK(p.exitcode() == std::optional<int>(0));
}

TEST_CASE("EINTR storm: Connection recv gets whole messages that a child sends later", "[eintr]") {
  auto [a, b] = mproc::Pipe();             // SOCK_SEQPACKET: the big message is many records
  auto [r, w] = mproc::Pipe(false);        // a plain pipe
  const std::string big(std::size_t{8} << 20, 'c');
  mproc::Event go;
  mproc::Process p(
      [](mproc::Connection out, mproc::Connection pw, std::string payload, mproc::Event g) {
        g.wait(10s);
        std::this_thread::sleep_for(kDelay);
        out.send(std::string("hello"));
        out.send(payload);
        pw.send(std::vector<int>{1, 2, 3});
        pw.send(payload);
      },
      b, w, big, go);
  SignalStorm storm;
  p.start();
  b.close();
  w.close();
  t::ScopeExit cleanup([&] {
    go.set();
    t::kill_and_join(p);
  });
  {
    Span s;
    CHECK_FALSE(a.poll(kTimeout));  // the child sends nothing before it is let go
    check_deadline(s, kTimeout);
  }
  go.set();
  Span s;
  CHECK(a.recv<std::string>() == "hello");
  check_interrupted(s);
  CHECK(a.recv<std::string>() == big);
  CHECK(r.recv<std::vector<int>>() == std::vector<int>{1, 2, 3});
  CHECK(r.recv<std::string>() == big);
  CHECK_THROWS_AS(a.recv<std::string>(), mproc::EOFError);  // the child ended: its end is closed
  p.join();
  CHECK(p.exitcode() == std::optional<int>(0));
}

TEST_CASE("EINTR storm: mproc::wait with a timeout on silent fds returns empty on time", "[eintr]") {
  auto [a, b] = mproc::Pipe();
  SignalStorm storm;
  Span s;
  const int fds[] = {a.fileno()};
  CHECK(mproc::wait(fds, std::chrono::nanoseconds(kTimeout)).empty());
  check_deadline(s, kTimeout);
}

TEST_CASE("EINTR storm: Lock acquire with a timeout on a lock a child holds returns false on time",
          "[eintr]") {
  mproc::Lock lock;
  mproc::Event held, go;
  mproc::Process p(
      [](mproc::Lock l, mproc::Event h, mproc::Event g) {
        l.acquire();
        h.set();
        g.wait(10s);
        l.release();
      },
      lock, held, go);
  SignalStorm storm;
  p.start();
  t::ScopeExit cleanup([&] {
    go.set();
    t::kill_and_join(p);
  });
  REQUIRE(held.wait(10s));
  {
    Span s;
    CHECK_FALSE(lock.acquire(kTimeout));
    check_deadline(s, kTimeout);
  }
  // Released by the child after its delay: the blocking acquire() gets it, interrupted on the way.
  std::thread releaser([&] {
    std::this_thread::sleep_for(kDelay);
    go.set();
  });
  Span s;
  lock.acquire();
  releaser.join();
  check_interrupted(s);
  CHECK_FALSE(lock.owner_died());
  lock.release();
  p.join();
  CHECK(p.exitcode() == std::optional<int>(0));
}

TEST_CASE("EINTR storm: Semaphore Condition and Barrier timed waits keep their deadlines", "[eintr]") {
  mproc::Semaphore sem(0);
  mproc::Condition cond;
  mproc::Barrier barrier(2);
  SignalStorm storm;
  {
    Span s;
    CHECK_FALSE(sem.acquire(kTimeout));
    check_deadline(s, kTimeout);
  }
  {
    cond.acquire();
    Span s;
    CHECK_FALSE(cond.wait(kTimeout));
    check_deadline(s, kTimeout);
    cond.release();
  }
  {
    Span s;
    CHECK_THROWS_AS(barrier.wait(kTimeout), mproc::BrokenBarrierError);
    check_deadline(s, kTimeout);
  }
}

TEST_CASE("EINTR storm: Event wait with a timeout returns false on time and true when a child sets it",
          "[eintr]") {
  mproc::Event ev;
  SignalStorm storm;
  {
    Span s;
    CHECK_FALSE(ev.wait(kTimeout));
    check_deadline(s, kTimeout);
  }
  mproc::Process p(
      [](mproc::Event e) {
        std::this_thread::sleep_for(kDelay);
        e.set();
      },
      ev);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  Span s;
  CHECK(ev.wait(10s));
  check_interrupted(s);
  CHECK(s.ms() < 5000);
  p.join();
}

namespace {
std::optional<mproc::Event> g_release;  // holds the pool task below; set before the Pool is built
int square_after_delay(int x) {
  std::this_thread::sleep_for(kDelay);
  return x * x;
}
int square_when_released(int x) {
  if (!g_release.value().wait(10s)) throw std::runtime_error("never released");
  return x * x;
}
}  // namespace

TEST_CASE("EINTR storm: AsyncResult get from mproc::async and Pool apply_async and Pool join", "[eintr]") {
  mproc::Event go;
  g_release.emplace();
  t::ScopeExit clear([] { g_release.reset(); });
  SignalStorm storm;
  // mproc::async: the value after the child's delay; get(timeout) that runs out; then the value.
  {
    auto r = mproc::async([] {
      std::this_thread::sleep_for(kDelay);
      return 42;
    });
    Span s;
    CHECK(r.get() == 42);
    check_interrupted(s);
  }
  {
    auto r = mproc::async([go]() mutable {
      go.wait(10s);
      return std::string("released");
    });
    Span s;
    CHECK_THROWS_AS(r.get(kTimeout), mproc::TimeoutError);
    check_deadline(s, kTimeout);
    go.set();
    CHECK(r.get() == "released");
  }
  // Pool::apply_async, forked and driven under the storm.
  mproc::Pool pool(2);
  {
    auto r = pool.apply_async(square_after_delay, 9);
    Span s;
    CHECK(r.get() == 81);
    check_interrupted(s);
  }
  {
    auto r = pool.apply_async(square_when_released, 5);
    Span s;
    CHECK_THROWS_AS(r.get(kTimeout), mproc::TimeoutError);
    check_deadline(s, kTimeout);
    g_release->set();
    CHECK(r.get() == 25);
  }
  CHECK(pool.map(square_after_delay, std::vector<int>{1, 2, 3, 4}, 1) == std::vector<int>{1, 4, 9, 16});
  auto last = pool.apply_async(square_after_delay, 3);
  pool.close();
  Span s;
  pool.join();  // waits for the last task
  check_interrupted(s);
  CHECK(last.get(1s) == 9);
}

TEST_CASE("EINTR storm: ChildProcess wait with a timeout keeps its deadline and wait returns the status",
          "[eintr]") {
  SignalStorm storm;
  {
    auto c = mproc::spawn("sleep", {"10"});
    t::ScopeExit cleanup([&] {
      try {
        if (c.running()) {
          c.kill(SIGKILL);
          c.wait();
        }
      } catch (...) {
      }
    });
    Span s;
    CHECK_FALSE(c.wait(kTimeout).has_value());
    check_deadline(s, kTimeout);
    c.kill(SIGKILL);
    Span s2;
    const auto st = c.wait();
    CHECK(s2.ms() < 5000);
    CHECK(st.signaled());
    CHECK(st.signal() == SIGKILL);
  }
  {
    // write() blocks on the full stdin pipe while cat blocks on its full stdout pipe: both keep moving.
    auto c = mproc::spawn("cat", {});
    const std::string data(std::size_t{4} << 20, 'w');
    Span s;
    c.write(data);
    c.close_stdin();
    CHECK(c.read_all_stdout() == data);
    CHECK(c.wait().exitcode() == 0);
    INFO("cat round trip: " << s.ms() << " ms, " << s.hits() << " signals");
    CHECK(s.hits() > 0);
  }
  {
    auto c = mproc::spawn("sh", {"-c", "sleep 0.3; echo done; exit 3"});
    Span s;
    CHECK(c.read_line_stdout() == std::optional<std::string>("done"));
    const auto st = c.wait();
    check_interrupted(s);
    CHECK(st.exited());
    CHECK(st.code() == 3);
  }
}
