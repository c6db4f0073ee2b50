// tests/test_synchronize.cpp — Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier
// (API.md §10), across real processes, including owner death by SIGKILL.
//
// Children are held at known points with pipes (Gates), never with sleeps. Where no fd can announce a
// state (a party registered inside Barrier::wait), t::wait_until polls with a generous bound. A check
// inside a child throws: the child then exits 1 with the message on stderr, and the parent's exit-code
// check fails.
#include "catch.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

using mproc::Barrier;
using mproc::BoundedSemaphore;
using mproc::BrokenBarrierError;
using mproc::Condition;
using mproc::Event;
using mproc::Lock;
using mproc::Process;
using mproc::RLock;
using mproc::Semaphore;
using mproc::UsageError;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace {

// In a child: fail (exit code 1, message on stderr) unless ok.
void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("child check failed: ") + what);
}

// In a child: fail unless f() throws E.
template <class E, class F>
void check_throws(F f, const char* what) {
  try {
    f();
  } catch (const E&) {
    return;
  }
  throw std::runtime_error(std::string("child check failed: no exception from ") + what);
}

void join_ok(Process& p) {
  REQUIRE(p.join(60s));
  CHECK(p.exitcode() == 0);
}

// Acquire-and-hold: the child takes the lock, reports 'h' on the pipe, then waits at the gate (until
// released, or until killed).
template <class L>
Process holder(L lock, int ready_w, t::ChildGate gate) {
  return Process(
      [](L l, int w, t::ChildGate g) {
        l.acquire();
        t::write_str(w, "h");
        g.wait();
        l.release();
      },
      lock, ready_w, gate);
}

double elapsed_ms(t::Clock::time_point t0) { return t::ms_since(t0); }

// The process sleeps in a futex wait (per /proc/<pid>/wchan; without it, any interruptible sleep).
bool sleeping_in_futex(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/wchan");
  std::string wchan;
  std::getline(f, wchan);
  if (!wchan.empty() && wchan != "0") return wchan.find("futex") != std::string::npos;
  auto st = t::proc_stat(pid);
  return st && st->state == 'S';
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Lock: try_acquire is false and acquire(100ms) times out while another process holds it",
          "[synchronize]") {
  Lock lock;
  t::Gate gate;
  auto ready = t::make_pipe();
  Process p = holder(lock, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] {
    gate.release();
    t::kill_and_join(p);
  });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");

  CHECK_FALSE(lock.try_acquire());
  CHECK_FALSE(lock.is_owned());
  auto t0 = t::Clock::now();
  CHECK_FALSE(lock.acquire(100ms));
  const double waited = elapsed_ms(t0);
  CHECK(waited >= 95);
  CHECK(waited < 2000);

  gate.release();
  join_ok(p);
  CHECK(lock.acquire(5s));  // free again once the child released it
  CHECK(lock.is_owned());
  CHECK_FALSE(lock.owner_died());
  lock.release();
}

TEST_CASE("Lock: a blocked acquire in one process returns when another releases", "[synchronize]") {
  Lock lock;
  auto ready = t::make_pipe();
  auto got = t::make_pipe();
  lock.acquire();
  Process p(
      [](Lock l, int rw, int gw) {
        t::write_str(rw, "r");
        l.acquire();  // blocks until the parent releases
        t::write_str(gw, "g");
        l.release();
      },
      lock, ready.w.get(), got.w.get());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "r");
  lock.release();
  CHECK(t::read_n(got.r.get(), 1, 10s) == "g");
  join_ok(p);
}

TEST_CASE("Lock: release of an unheld lock or of a lock another process holds throws UsageError",
          "[synchronize]") {
  Lock lock;
  CHECK_THROWS_AS(lock.release(), UsageError);

  // Held by the parent: the child may not release it, and its attempt changes nothing.
  lock.acquire();
  Process p([](Lock l) { check_throws<UsageError>([&] { l.release(); }, "release by another process"); }, lock);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  CHECK(lock.is_owned());
  lock.release();
  CHECK_THROWS_AS(lock.release(), UsageError);  // released once already
  CHECK(lock.try_acquire());
  lock.release();
}

TEST_CASE("Lock: release from another thread of the same process throws UsageError", "[synchronize]") {
  Lock lock;
  lock.acquire();
  bool threw = false;
  std::thread th([&] {
    try {
      lock.release();
    } catch (const UsageError&) {
      threw = true;
    }
  });
  th.join();
  CHECK(threw);
  CHECK(lock.is_owned());
  lock.release();
}

TEST_CASE("Lock: not recursive - the holder's own acquire(timeout) times out", "[synchronize]") {
  Lock lock;
  lock.acquire();
  CHECK_FALSE(lock.try_acquire());
  CHECK_FALSE(lock.acquire(50ms));
  lock.release();
}

TEST_CASE("Lock: std::lock_guard - std::unique_lock - std::scoped_lock work", "[synchronize]") {
  Lock a;
  RLock b;
  Semaphore c(1);
  {
    std::scoped_lock g(a, b, c);
    CHECK(a.is_owned());
    CHECK(b.is_owned());
    CHECK(c.get_value() == 0);
  }
  CHECK_FALSE(a.is_owned());
  CHECK_FALSE(b.is_owned());
  CHECK(c.get_value() == 1);
  {
    std::lock_guard g(a);
    CHECK(a.is_owned());
  }
  CHECK_FALSE(a.is_owned());

  // unique_lock with try_to_lock and try_lock_for against a lock held by another process.
  t::Gate gate;
  auto ready = t::make_pipe();
  Process p = holder(a, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] {
    gate.release();
    t::kill_and_join(p);
  });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");
  {
    std::unique_lock u(a, std::try_to_lock);
    CHECK_FALSE(u.owns_lock());
    CHECK_FALSE(u.try_lock_for(20ms));
  }
  gate.release();
  join_ok(p);
  {
    std::unique_lock u(a, std::defer_lock);
    CHECK(u.try_lock_for(5s));
    CHECK(a.is_owned());
  }
  CHECK_FALSE(a.is_owned());
}

TEST_CASE("Lock: a process SIGKILLed while holding it - the next acquire succeeds within 2 s with owner_died",
          "[synchronize]") {
  Lock lock;
  t::Gate gate;  // never released: the child holds the lock until killed
  auto ready = t::make_pipe();
  Process p = holder(lock, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");
  CHECK_FALSE(lock.try_acquire());

  p.kill();
  auto t0 = t::Clock::now();
  REQUIRE(lock.acquire(2s));
  CHECK(elapsed_ms(t0) < 2000);
  CHECK(lock.owner_died());
  CHECK(lock.is_owned());
  lock.release();
  REQUIRE(p.join(10s));
  CHECK(p.exitcode() == -SIGKILL);

  // Fully usable afterwards, and the next ordinary acquire clears owner_died.
  CHECK(lock.try_acquire());
  CHECK_FALSE(lock.owner_died());
  lock.release();
}

TEST_CASE("Lock: a blocked acquirer is woken when the holder is SIGKILLed", "[synchronize]") {
  Lock lock;
  t::Gate gate;
  auto ready = t::make_pipe();
  Process p = holder(lock, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");
  std::atomic<bool> got{false}, died{false};
  std::thread waiter([&] {
    if (lock.acquire(10s)) {
      got = true;
      died = lock.owner_died();
      lock.release();
    }
  });
  p.kill();
  waiter.join();
  CHECK(got);
  CHECK(died);
  REQUIRE(p.join(10s));
}

// ---------------------------------------------------------------------------------------------------
// RLock
// ---------------------------------------------------------------------------------------------------

TEST_CASE("RLock: re-entry 3 times needs 3 releases before another process can take it", "[synchronize]") {
  RLock lock;
  lock.acquire();
  CHECK(lock.try_acquire());
  CHECK(lock.acquire(10ms));
  CHECK(lock.is_owned());

  // Another process probes the lock after each release: 'y' if it could take it (and gives it back).
  auto probe = [&] {
    auto out = t::make_pipe();
    Process p(
        [](RLock l, int w) {
          if (l.try_acquire()) {
            l.release();
            t::write_str(w, "y");
          } else {
            t::write_str(w, "n");
          }
        },
        lock, out.w.get());
    p.start();
    std::string r = t::read_n(out.r.get(), 1, 10s);
    join_ok(p);
    return r;
  };
  CHECK(probe() == "n");
  lock.release();
  CHECK(probe() == "n");
  lock.release();
  CHECK(probe() == "n");
  CHECK(lock.is_owned());
  lock.release();
  CHECK_FALSE(lock.is_owned());
  CHECK(probe() == "y");
  CHECK_THROWS_AS(lock.release(), UsageError);  // a fourth release
}

TEST_CASE("RLock: release by a non-owner throws UsageError", "[synchronize]") {
  RLock lock;
  CHECK_THROWS_AS(lock.release(), UsageError);  // nobody holds it
  lock.acquire();
  lock.acquire();
  Process p([](RLock l) { check_throws<UsageError>([&] { l.release(); }, "release by another process"); }, lock);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  bool threw = false;
  std::thread th([&] {
    try {
      lock.release();
    } catch (const UsageError&) {
      threw = true;
    }
  });
  th.join();
  CHECK(threw);
  CHECK(lock.is_owned());  // the failed releases changed nothing: still held twice
  lock.release();
  CHECK(lock.is_owned());
  lock.release();
  CHECK_FALSE(lock.is_owned());
}

TEST_CASE("RLock: a process SIGKILLed while holding it (re-entered) - the next acquire succeeds with owner_died",
          "[synchronize]") {
  RLock lock;
  auto ready = t::make_pipe();
  t::Gate gate;
  Process p(
      [](RLock l, int w, t::ChildGate g) {
        l.acquire();
        l.acquire();
        t::write_str(w, "h");
        g.wait();
      },
      lock, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");
  CHECK_FALSE(lock.try_acquire());
  p.kill();
  auto t0 = t::Clock::now();
  REQUIRE(lock.acquire(2s));
  CHECK(elapsed_ms(t0) < 2000);
  CHECK(lock.owner_died());
  lock.acquire();  // re-entry keeps owner_died for this hold
  CHECK(lock.owner_died());
  lock.release();
  lock.release();  // held once from the recovery plus once: two releases free it
  CHECK_FALSE(lock.is_owned());
  REQUIRE(p.join(10s));
  Process q([](RLock l) {
    check(l.try_acquire(), "free after recovery");
    check(!l.owner_died(), "owner_died cleared by an ordinary acquire");
    l.release();
  }, lock);
  q.start();
  join_ok(q);
}

// ---------------------------------------------------------------------------------------------------
// Semaphore, BoundedSemaphore
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Semaphore(2): values 2 1 0 - acquire(100ms) false at 0 - release wakes a blocked process",
          "[synchronize]") {
  Semaphore sem(2);
  CHECK(sem.get_value() == 2);
  sem.acquire();
  CHECK(sem.get_value() == 1);
  CHECK(sem.try_acquire());
  CHECK(sem.get_value() == 0);
  CHECK_FALSE(sem.try_acquire());
  auto t0 = t::Clock::now();
  CHECK_FALSE(sem.acquire(100ms));
  const double waited = elapsed_ms(t0);
  CHECK(waited >= 95);
  CHECK(waited < 2000);

  // A child blocks at 0 until the parent releases a unit; units have no owner, so the child keeps it
  // and a third party (the parent) could release it too.
  auto ready = t::make_pipe();
  auto got = t::make_pipe();
  Process p(
      [](Semaphore s, int rw, int gw) {
        t::write_str(rw, "r");
        s.acquire();
        t::write_str(gw, "g");
      },
      sem, ready.w.get(), got.w.get());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "r");
  sem.release();
  CHECK(t::read_n(got.r.get(), 1, 10s) == "g");
  join_ok(p);
  CHECK(sem.get_value() == 0);
  sem.release();
  sem.release();
  sem.release();  // an unbounded Semaphore may go past its initial value
  CHECK(sem.get_value() == 3);
}

TEST_CASE("BoundedSemaphore: release past the initial value throws UsageError", "[synchronize]") {
  BoundedSemaphore sem(2);
  CHECK_THROWS_AS(sem.release(), UsageError);
  CHECK(sem.get_value() == 2);
  sem.acquire();
  Process p([](BoundedSemaphore s) {
    s.release();  // back to 2: allowed from any process
    check_throws<UsageError>([&] { s.release(); }, "over-release in the child");
  }, sem);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  CHECK(sem.get_value() == 2);
  { std::lock_guard g(sem); CHECK(sem.get_value() == 1); }
  CHECK(sem.get_value() == 2);
}

TEST_CASE("Semaphore: a unit held by a SIGKILLed process is lost but timed waits return", "[synchronize]") {
  Semaphore sem(1);
  auto ready = t::make_pipe();
  t::Gate gate;
  Process p(
      [](Semaphore s, int w, t::ChildGate g) {
        s.acquire();
        t::write_str(w, "h");
        g.wait();
      },
      sem, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");
  p.kill();
  REQUIRE(p.join(10s));
  auto t0 = t::Clock::now();
  CHECK_FALSE(sem.acquire(100ms));  // documented: not recoverable, but no hang
  CHECK(elapsed_ms(t0) < 2000);
  CHECK(sem.get_value() == 0);
}

// ---------------------------------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Event: set in a child wakes the parent's wait()", "[synchronize]") {
  Event ev;
  t::Gate gate;
  Process p(
      [](Event e, t::ChildGate g) {
        g.wait();
        e.set();
      },
      ev, gate.child());
  t::ScopeExit cleanup([&] {
    gate.release();
    t::kill_and_join(p);
  });
  p.start();
  CHECK_FALSE(ev.is_set());
  gate.release();
  CHECK(ev.wait());
  CHECK(ev.is_set());
  join_ok(p);
}

TEST_CASE("Event: wait(100ms) is false when unset - clear works - set-then-clear still wakes a sleeper",
          "[synchronize]") {
  Event ev;
  auto t0 = t::Clock::now();
  CHECK_FALSE(ev.wait(100ms));
  const double waited = elapsed_ms(t0);
  CHECK(waited >= 95);
  CHECK(waited < 2000);

  ev.set();
  CHECK(ev.is_set());
  CHECK(ev.wait(0ms));
  ev.set();  // idempotent
  ev.clear();
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait(10ms));

  // A child sleeping in wait() is released by a set() even if clear() follows at once.
  auto ready = t::make_pipe();
  Process p(
      [](Event e, int w) {
        t::write_str(w, "r");
        check(e.wait(30s), "woken by set() although clear() followed");
      },
      ev, ready.w.get());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "r");
  // The guarantee is for a waiter already asleep: no fd announces that, so poll /proc until the child
  // sleeps in the futex (its only sleep after writing 'r').
  REQUIRE(t::wait_until([&] { return sleeping_in_futex(*p.pid()); }, 10s));
  ev.set();
  ev.clear();
  join_ok(p);
}

// ---------------------------------------------------------------------------------------------------
// Condition
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Condition: notify(2) with 4 waiting processes wakes exactly 2 and notify_all the rest",
          "[synchronize]") {
  Condition cond;
  auto ready = t::make_pipe();
  auto woke = t::make_pipe();
  std::vector<Process> ps;
  t::ScopeExit cleanup([&] { t::kill_and_join(ps); });
  for (int i = 0; i < 4; ++i) {
    ps.emplace_back(
        [](Condition c, int rw, int ww) {
          c.acquire();
          t::write_str(rw, "r");  // still holding the lock: the parent cannot notify before we wait
          c.wait();
          check(c.get_lock().is_owned(), "wait() returns with the lock held");
          t::write_str(ww, "w");
          c.release();
        },
        cond, ready.w.get(), woke.w.get());
    ps.back().start();
  }
  REQUIRE(t::read_n(ready.r.get(), 4, 20s) == "rrrr");
  // Acquiring the lock now means every child has registered and released it inside wait().
  cond.acquire();
  cond.notify(2);
  cond.release();
  CHECK(t::read_n(woke.r.get(), 2, 20s) == "ww");
  // Exactly two: a third wake-up does not come (a bounded check for an absence)...
  CHECK(t::read_n(woke.r.get(), 1, 300ms).empty());
  // ...and the other two are still waiting: notify(1) wakes exactly one more.
  cond.acquire();
  cond.notify(1);
  cond.release();
  CHECK(t::read_n(woke.r.get(), 1, 20s) == "w");
  CHECK(t::read_n(woke.r.get(), 1, 300ms).empty());
  cond.acquire();
  cond.notify_all();
  cond.release();
  CHECK(t::read_n(woke.r.get(), 1, 20s) == "w");
  for (auto& p : ps) join_ok(p);
}

TEST_CASE("Condition: wait(100ms) returns false - wait_for with a predicate", "[synchronize]") {
  Condition cond;
  mproc::Value<int> state(0, false);
  std::lock_guard g(cond);
  auto t0 = t::Clock::now();
  CHECK_FALSE(cond.wait(100ms));
  const double waited = elapsed_ms(t0);
  CHECK(waited >= 95);
  CHECK(waited < 2000);
  CHECK(cond.get_lock().is_owned());

  CHECK_FALSE(cond.wait_for([&] { return state.load() == 3; }, 50ms));
  CHECK(cond.wait_for([] { return true; }, 0ms));

  // A child moves the state 1, 2, 3, notifying each time; the parent wakes up to 3 times (and may
  // see intermediate values) but returns only once the predicate holds.
  Process p([](Condition c, mproc::Value<int> s) {
    for (int i = 1; i <= 3; ++i) {
      std::lock_guard lk(c);
      s.store(i);
      c.notify_all();
    }
  }, cond, state);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  CHECK(cond.wait_for([&] { return state.load() == 3; }, 30s));
  cond.wait_for([&] { return state.load() == 3; });  // untimed form: holds at once
  join_ok(p);
}

TEST_CASE("Condition: wait and notify without holding the lock throw UsageError", "[synchronize]") {
  Condition cond;
  CHECK_THROWS_AS(cond.wait(), UsageError);
  CHECK_THROWS_AS(cond.wait(10ms), UsageError);
  CHECK_THROWS_AS(cond.notify(), UsageError);
  CHECK_THROWS_AS(cond.notify_all(), UsageError);
  CHECK_THROWS_AS(cond.release(), UsageError);
}

TEST_CASE("Condition: shares a Lock passed to it", "[synchronize]") {
  Lock lock;
  Condition cond(lock);
  lock.acquire();
  CHECK_FALSE(cond.try_acquire());
  cond.notify();  // allowed: the lock is held through another handle
  CHECK_FALSE(cond.wait(10ms));
  CHECK(lock.is_owned());
  cond.release();
  CHECK_FALSE(lock.is_owned());
}

TEST_CASE("Condition: a process SIGKILLed while holding its lock - the next acquire succeeds with owner_died",
          "[synchronize]") {
  Condition cond;
  auto ready = t::make_pipe();
  t::Gate gate;
  Process p(
      [](Condition c, int w, t::ChildGate g) {
        c.acquire();
        t::write_str(w, "h");
        g.wait();
      },
      cond, ready.w.get(), gate.child());
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "h");
  CHECK_FALSE(cond.try_acquire());
  p.kill();
  auto t0 = t::Clock::now();
  REQUIRE(cond.acquire(2s));
  CHECK(elapsed_ms(t0) < 2000);
  CHECK(cond.owner_died());
  CHECK_FALSE(cond.wait(10ms));  // usable: wait/notify work after the recovery
  cond.notify_all();
  cond.release();
  REQUIRE(p.join(10s));
}

TEST_CASE("Condition: a waiter SIGKILLed while waiting does not swallow a notify", "[synchronize]") {
  Condition cond;
  auto ready = t::make_pipe();
  auto woke = t::make_pipe();
  auto waiter = [](Condition c, int rw, int ww) {
    std::unique_lock lk(c);
    t::write_str(rw, "r");
    c.wait();
    t::write_str(ww, "w");
  };
  Process doomed(waiter, cond, ready.w.get(), woke.w.get());  // waits first: the oldest ticket
  Process live(waiter, cond, ready.w.get(), woke.w.get());
  t::ScopeExit cleanup([&] {
    t::kill_and_join(doomed);
    t::kill_and_join(live);
  });
  doomed.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "r");
  live.start();
  REQUIRE(t::read_n(ready.r.get(), 1, 10s) == "r");
  doomed.kill();
  REQUIRE(doomed.join(10s));
  cond.acquire();  // both registered (each held the lock until inside wait)
  cond.notify(1);  // the dead waiter's slot is skipped: the token goes to the live one
  cond.release();
  CHECK(t::read_n(woke.r.get(), 1, 20s) == "w");
  join_ok(live);
}

TEST_CASE("Condition: 200 notify(1) hand-offs between two processes", "[synchronize]") {
  // Ping-pong on one condition: each side waits for its turn. Exercises wait/notify under real
  // contention (lost wake-ups would hang and hit the timeout).
  Condition cond;
  mproc::Value<int> turn(0, false);
  constexpr int kRounds = 200;
  Process p([](Condition c, mproc::Value<int> tu) {
    std::unique_lock lk(c);
    for (int i = 0; i < kRounds; ++i) {
      check(c.wait_for([&] { return tu.load() % 2 == 1; }, 30s), "child's turn came");
      tu.store(tu.load() + 1);
      c.notify();
    }
  }, cond, turn);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  {
    std::unique_lock lk(cond);
    for (int i = 0; i < kRounds; ++i) {
      REQUIRE(cond.wait_for([&] { return turn.load() % 2 == 0; }, 30s));
      turn.store(turn.load() + 1);
      cond.notify();
    }
    REQUIRE(cond.wait_for([&] { return turn.load() == 2 * kRounds; }, 30s));
  }
  join_ok(p);
}

// ---------------------------------------------------------------------------------------------------
// Barrier
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Barrier(5): 200 passes x 5 processes - exactly one index 0 per pass - the action once per pass",
          "[synchronize]") {
  constexpr int kPasses = 200;
  constexpr int kParties = 5;
  mproc::Value<int> actions(0);
  mproc::Array<int> zeros(kPasses);        // how many got index 0 in each pass
  mproc::Array<unsigned> masks(kPasses);   // which indices were returned in each pass
  Barrier barrier(kParties, [actions]() mutable { ++actions.raw(); });  // runs under the barrier's lock
  CHECK(barrier.parties() == kParties);
  std::vector<Process> ps;
  t::ScopeExit cleanup([&] { t::kill_and_join(ps); });
  for (int k = 0; k < kParties; ++k) {
    ps.emplace_back(
        [](Barrier b, mproc::Value<int> act, mproc::Array<int> z, mproc::Array<unsigned> m) {
          for (int pass = 0; pass < kPasses; ++pass) {
            const std::size_t idx = b.wait(60s);
            check(idx < kParties, "index in [0, parties)");
            // The action of this pass ran before anyone was released.
            check(act.load() >= pass + 1, "action ran before the release");
            std::lock_guard g(m.get_lock());
            m[pass] |= 1u << idx;
            if (idx == 0) ++z[pass];
          }
        },
        barrier, actions, zeros, masks);
    ps.back().start();
  }
  for (auto& p : ps) join_ok(p);
  CHECK(actions.load() == kPasses);
  int bad_zero = 0, bad_mask = 0;
  for (int pass = 0; pass < kPasses; ++pass) {
    bad_zero += zeros[pass] != 1;
    bad_mask += masks[pass] != (1u << kParties) - 1;
  }
  CHECK(bad_zero == 0);
  CHECK(bad_mask == 0);
  CHECK_FALSE(barrier.broken());
  CHECK(barrier.n_waiting() == 0);
}

TEST_CASE("Barrier: abort gives waiters BrokenBarrierError - reset recovers", "[synchronize]") {
  Barrier barrier(3);
  std::vector<Process> ps;
  t::ScopeExit cleanup([&] { t::kill_and_join(ps); });
  for (int k = 0; k < 2; ++k) {
    ps.emplace_back([](Barrier b) { check_throws<BrokenBarrierError>([&] { b.wait(); }, "wait across abort"); },
                    barrier);
    ps.back().start();
  }
  REQUIRE(t::wait_until([&] { return barrier.n_waiting() == 2; }, 20s));
  barrier.abort();
  for (auto& p : ps) join_ok(p);
  CHECK(barrier.broken());
  CHECK(barrier.n_waiting() == 0);
  CHECK_THROWS_AS(barrier.wait(), BrokenBarrierError);  // stays broken

  barrier.reset();
  CHECK_FALSE(barrier.broken());
  ps.clear();
  auto idx = t::make_pipe();
  for (int k = 0; k < 2; ++k) {
    ps.emplace_back([](Barrier b, int w) { t::write_str(w, std::to_string(b.wait(30s))); }, barrier, idx.w.get());
    ps.back().start();
  }
  const std::size_t mine = barrier.wait(30s);
  for (auto& p : ps) join_ok(p);
  std::string got = t::read_n(idx.r.get(), 2, 10s) + std::to_string(mine);
  std::sort(got.begin(), got.end());
  CHECK(got == "012");
}

TEST_CASE("Barrier: a late party - wait(500ms) breaks it for all - reset recovers", "[synchronize]") {
  Barrier barrier(3);
  Process early([](Barrier b) { check_throws<BrokenBarrierError>([&] { b.wait(); }, "untimed wait"); }, barrier);
  t::ScopeExit cleanup([&] { t::kill_and_join(early); });
  early.start();
  REQUIRE(t::wait_until([&] { return barrier.n_waiting() == 1; }, 20s));

  // The third party never comes: the parent's timed wait breaks the barrier, for the early child too.
  auto t0 = t::Clock::now();
  CHECK_THROWS_AS(barrier.wait(500ms), BrokenBarrierError);
  const double waited = elapsed_ms(t0);
  CHECK(waited >= 450);
  CHECK(waited < 5000);
  join_ok(early);
  CHECK(barrier.broken());

  barrier.reset();
  CHECK_FALSE(barrier.broken());
  std::vector<Process> ps;
  t::ScopeExit cleanup2([&] { t::kill_and_join(ps); });
  for (int k = 0; k < 2; ++k) {
    ps.emplace_back([](Barrier b) { b.wait(30s); }, barrier);
    ps.back().start();
  }
  CHECK(barrier.wait(30s) < 3);
  for (auto& p : ps) join_ok(p);
}

TEST_CASE("Barrier: the constructor's timeout applies to wait() - an action's exception breaks it",
          "[synchronize]") {
  Barrier timed(2, {}, std::chrono::nanoseconds(100ms));
  auto t0 = t::Clock::now();
  CHECK_THROWS_AS(timed.wait(), BrokenBarrierError);
  CHECK(elapsed_ms(t0) >= 95);
  CHECK(timed.broken());

  Barrier throwing(2, [] { throw std::runtime_error("action failed"); });
  Process p([](Barrier b) { check_throws<BrokenBarrierError>([&] { b.wait(30s); }, "wait when the action throws"); },
            throwing);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  REQUIRE(t::wait_until([&] { return throwing.n_waiting() == 1; }, 20s));
  CHECK_THROWS_AS(throwing.wait(30s), std::runtime_error);  // the last arriver gets the action's exception
  join_ok(p);
  CHECK(throwing.broken());
  CHECK_THROWS_AS(Barrier(0), UsageError);
}

TEST_CASE("Barrier: a party SIGKILLed while waiting - the others time out and reset forgets it", "[synchronize]") {
  Barrier barrier(3);
  Process doomed([](Barrier b) { b.wait(); }, barrier);
  t::ScopeExit cleanup([&] { t::kill_and_join(doomed); });
  doomed.start();
  REQUIRE(t::wait_until([&] { return barrier.n_waiting() == 1; }, 20s));
  doomed.kill();
  REQUIRE(doomed.join(10s));

  // Counted but dead: the parent's wait cannot complete the pass (two of three); its timeout breaks it.
  CHECK(barrier.n_waiting() == 1);
  CHECK_THROWS_AS(barrier.wait(200ms), BrokenBarrierError);
  CHECK(barrier.broken());

  barrier.reset();  // the dead party's slot is freed: a fresh pass of three live parties works
  CHECK_FALSE(barrier.broken());
  CHECK(barrier.n_waiting() == 0);
  std::vector<Process> ps;
  t::ScopeExit cleanup3([&] { t::kill_and_join(ps); });
  for (int k = 0; k < 2; ++k) {
    ps.emplace_back([](Barrier b) { b.wait(30s); }, barrier);
    ps.back().start();
  }
  CHECK(barrier.wait(30s) < 3);
  for (auto& p : ps) join_ok(p);
}
