// tests/test_process.cpp — mproc::Process (API.md §3): exit codes, join/timeouts/sentinel, the
// UsageError cases, names, current_process/parent_process/active_children, destructor and parent-exit
// semantics, fork safety with threads, MPROC_TRACE.
//
// Children are held at known points with Gates (pipes), never with sleeps; every test kills and joins
// its children in failure paths (ScopeExit + kill_and_join).
#include "catch.hpp"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

#include "helpers/hold_until_sync.hpp"
#include "test_util.hpp"

using mproc::Process;
using mproc::UsageError;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace {

// "Process-17" -> 17; -1 if the name does not have that form.
long process_number(const std::string& name) {
  const std::string prefix = "Process-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  for (std::size_t i = prefix.size(); i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stol(name.substr(prefix.size()));
}

// The value after "key=" on the first line that starts with it.
std::optional<std::string> field(const std::vector<std::string>& lines, const std::string& key) {
  for (auto& l : lines)
    if (l.rfind(key + "=", 0) == 0) return l.substr(key.size() + 1);
  return std::nullopt;
}

// "pid=<n>" with n not followed by another digit.
bool mentions_pid(const std::string& line, pid_t pid) {
  const std::string needle = "pid=" + std::to_string(pid);
  for (auto at = line.find(needle); at != std::string::npos; at = line.find(needle, at + 1)) {
    auto end = at + needle.size();
    if (end == line.size() || line[end] < '0' || line[end] > '9') return true;
  }
  return false;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------------------------------

TEST_CASE("a target runs with its arguments in the child and returning gives exit code 0", "[process]") {
  auto out = t::make_pipe();
  Process p(
      [](int fd, int n, const std::string& s) {
        t::write_str(fd, s + std::to_string(n) + " " + std::to_string(::getpid()));
      },
      out.w.get(), 42, std::string("answer="));
  CHECK_FALSE(p.pid());
  CHECK_FALSE(p.exitcode());
  CHECK_FALSE(p.exit_status());
  CHECK_FALSE(p.is_alive());
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(p.pid());
  CHECK(*p.pid() != ::getpid());
  p.join();
  out.w.reset();
  CHECK(t::read_to_eof(out.r.get(), 5s) == "answer=42 " + std::to_string(*p.pid()));
  REQUIRE(p.exitcode() == 0);
  auto st = p.exit_status();
  REQUIRE(st);
  CHECK(st->exited());
  CHECK(st->code() == 0);
  CHECK(st->to_string() == "exited with code 0");
  CHECK_FALSE(p.is_alive());
  CHECK(t::is_gone(*p.pid()));  // reaped by join(), not left a zombie
}

TEST_CASE("mproc::exit(7) in the child gives exit code 7", "[process]") {
  auto out = t::make_pipe();
  Process p([w = out.w.get()] {
    mproc::exit(7);
    t::write_str(w, "after exit");  // never reached
  });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  out.w.reset();
  CHECK(p.exitcode() == 7);
  CHECK(p.exit_status()->code() == 7);
  CHECK(t::read_to_eof(out.r.get(), 5s).empty());
}

TEST_CASE("exit_status to_string reads exited with code 3", "[process]") {
  Process p([] { mproc::exit(3); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  REQUIRE(p.exit_status());
  CHECK(p.exit_status()->to_string() == "exited with code 3");
  CHECK(p.exitcode() == 3);
}

TEST_CASE("an escaping exception gives exit code 1 and prints Process name with type and message", "[process]") {
  Process p([] { throw std::runtime_error("boom from the child"); });
  p.name("thrower");
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  std::string err;
  {
    t::StderrCapture capture;  // the child inherits fd 2 = our pipe
    p.start();
    capture.restore();
    p.join();
    err = capture.read_all(5s);
  }
  INFO("child's stderr: " << err);
  CHECK(p.exitcode() == 1);
  CHECK(contains(err, "Process thrower:"));
  CHECK(contains(err, "runtime_error"));
  CHECK(contains(err, "boom from the child"));
}

TEST_CASE("an escaping exception of a non-standard type also gives exit code 1", "[process]") {
  Process p([] { throw 42; });
  p.name("int-thrower");
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  std::string err;
  {
    t::StderrCapture capture;
    p.start();
    capture.restore();
    p.join();
    err = capture.read_all(5s);
  }
  INFO("child's stderr: " << err);
  CHECK(p.exitcode() == 1);
  CHECK(contains(err, "Process int-thrower:"));
}

TEST_CASE("terminate() ends the child by SIGTERM and exitcode is -15", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  CHECK(p.is_alive());
  CHECK_FALSE(p.exitcode());
  p.terminate();
  p.join();
  CHECK(p.exitcode() == -15);
  REQUIRE(p.exit_status());
  CHECK(p.exit_status()->signaled());
  CHECK(p.exit_status()->signal() == SIGTERM);
  CHECK(p.exit_status()->to_string() == "killed by SIGTERM");
  CHECK_NOTHROW(p.terminate());  // no-ops once ended
  CHECK_NOTHROW(p.kill());
  CHECK(p.exitcode() == -15);
}

TEST_CASE("kill() ends the child by SIGKILL and exitcode is -9", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  p.kill();
  p.join();
  CHECK(p.exitcode() == -9);
  REQUIRE(p.exit_status());
  CHECK(p.exit_status()->to_string() == "killed by SIGKILL");
}

TEST_CASE("abort() in the child gives exitcode -6", "[process]") {
  Process p([] {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // no core file to write
    std::abort();
  });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  CHECK(p.exitcode() == -6);
  CHECK(p.exit_status()->signal() == SIGABRT);
}

TEST_CASE("a Process without target and a Process whose target captures state", "[process]") {
  Process empty;
  empty.start();
  t::ScopeExit cleanup1([&] { t::kill_and_join(empty); });
  empty.join();
  CHECK(empty.exitcode() == 0);

  auto out = t::make_pipe();
  std::vector<int> captured{1, 2, 3};
  auto owned = std::make_unique<int>(41);
  Process p(
      [captured, w = out.w.get()](std::unique_ptr<int> v) {
        int sum = 0;
        for (int x : captured) sum += x;
        t::write_str(w, std::to_string(sum) + "/" + std::to_string(*v + 1));
      },
      std::move(owned));  // move-only arguments work, like std::thread
  captured.clear();       // the target holds its own copy
  p.start();
  t::ScopeExit cleanup2([&] { t::kill_and_join(p); });
  p.join();
  out.w.reset();
  CHECK(p.exitcode() == 0);
  CHECK(t::read_to_eof(out.r.get(), 5s) == "6/42");
}

namespace {
class RunWriter : public Process {
 public:
  explicit RunWriter(int fd) : fd_(fd) {}

 protected:
  void run() override {
    t::write_str(fd_, "from run() in " + mproc::current_process().name);
    mproc::exit(9);
  }

 private:
  int fd_;
};
}  // namespace

TEST_CASE("a subclass that overrides run() runs it in the child", "[process]") {
  auto out = t::make_pipe();
  RunWriter p(out.w.get());
  p.name("subclassed");
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  out.w.reset();
  CHECK(p.exitcode() == 9);
  CHECK(t::read_to_eof(out.r.get(), 5s) == "from run() in subclassed");
}

TEST_CASE("a started Process can be moved and joined through the new object", "[process]") {
  t::Gate gate;
  Process a([g = gate.child()] {
    g.arrive_and_wait();
    mproc::exit(4);
  });
  a.start();
  const pid_t pid = *a.pid();
  Process b(std::move(a));
  t::ScopeExit cleanup([&] { t::kill_and_join(b); });
  REQUIRE(gate.wait_ready());
  CHECK(b.pid() == pid);
  CHECK(b.is_alive());
  Process c;
  c = std::move(b);
  t::ScopeExit cleanup2([&] { t::kill_and_join(c); });
  gate.release();
  c.join();
  CHECK(c.exitcode() == 4);
}

// ---------------------------------------------------------------------------------------------------
// join, timeouts, sentinel, is_alive
// ---------------------------------------------------------------------------------------------------

TEST_CASE("join(0s) on a running child returns false at once", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  auto t0 = t::Clock::now();
  const bool ended = p.join(0s);
  const double took = t::ms_since(t0);
  CHECK_FALSE(ended);
  CHECK(took < 1000.0);  // returns at once (the child is gated forever); a hang guard on a loaded machine
  CHECK(p.is_alive());
  CHECK_FALSE(p.exitcode());
  CHECK_FALSE(p.join(-5ms));  // a negative timeout counts as zero
  gate.release();
  CHECK(p.join(10s));
  CHECK(p.exitcode() == 0);
}

TEST_CASE("join(200ms) on a running child returns false after about 200 ms", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  auto t0 = t::Clock::now();
  const bool ended = p.join(200ms);
  const double took = t::ms_since(t0);
  INFO("join(200ms) took " << took << " ms");
  CHECK_FALSE(ended);
  CHECK(took >= 190.0);
  CHECK(took < 2000.0);
  CHECK(p.is_alive());
  gate.release();
  t0 = t::Clock::now();
  CHECK(p.join(std::chrono::seconds(10)));  // true once the child ended within the timeout
  CHECK(t::ms_since(t0) < 5000.0);
  CHECK(p.exitcode() == 0);
}

TEST_CASE("join() after kill() returns promptly", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  p.kill();
  auto t0 = t::Clock::now();
  p.join();
  const double took = t::ms_since(t0);
  INFO("join() after kill() took " << took << " ms");
  CHECK(took < 2000.0);
  CHECK(p.exitcode() == -9);
  auto t1 = t::Clock::now();
  p.join();  // joining an ended child again returns at once
  CHECK(t::ms_since(t1) < 1000.0);
}

TEST_CASE("the sentinel becomes readable when the child ends and not before", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  const int fd = p.sentinel();
  CHECK(fd >= 0);
  CHECK(p.sentinel() == fd);  // stable until close()
  pollfd pfd{fd, POLLIN, 0};
  CHECK(::poll(&pfd, 1, 0) == 0);
  CHECK(::poll(&pfd, 1, 100) == 0);  // still running: not readable
  CHECK(p.is_alive());
  gate.release();
  pfd.revents = 0;
  REQUIRE(::poll(&pfd, 1, 10000) == 1);
  CHECK((pfd.revents & POLLIN) != 0);
  CHECK(p.exitcode() == 0);
  CHECK(::poll(&pfd, 1, 0) == 1);  // stays readable after reaping
  p.join();
}

TEST_CASE("is_alive is false before start and true while running and false after the end which reaps", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  CHECK_FALSE(p.is_alive());
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  CHECK(p.is_alive());
  const pid_t pid = *p.pid();
  gate.release();
  pollfd pfd{p.sentinel(), POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 10000) == 1);  // ended; not reaped yet
  CHECK_FALSE(p.is_alive());
  CHECK(t::is_gone(pid));  // is_alive() reaped it: no zombie
  CHECK(p.exitcode() == 0);
}

// ---------------------------------------------------------------------------------------------------
// UsageError
// ---------------------------------------------------------------------------------------------------

TEST_CASE("start() twice throws UsageError", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  CHECK_THROWS_AS(p.start(), UsageError);
  gate.release();
  p.join();
  CHECK_THROWS_AS(p.start(), UsageError);  // also once it ended
  CHECK(p.exitcode() == 0);
}

TEST_CASE("join and the signal calls before start throw UsageError", "[process]") {
  Process p([] {});
  CHECK_THROWS_AS(p.join(), UsageError);
  CHECK_THROWS_AS(p.join(0s), UsageError);
  CHECK_THROWS_AS(p.terminate(), UsageError);
  CHECK_THROWS_AS(p.kill(), UsageError);
  CHECK_THROWS_AS(p.sentinel(), UsageError);
  // the queries answer without throwing
  CHECK_FALSE(p.is_alive());
  CHECK_FALSE(p.pid());
  CHECK_FALSE(p.exitcode());
  CHECK_FALSE(p.exit_status());
  CHECK(t::raw_children().empty());  // nothing was forked
}

TEST_CASE("daemon() after start throws UsageError", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  CHECK_THROWS_AS(p.daemon(true), UsageError);
  CHECK_FALSE(p.daemon());
  gate.release();
  p.join();
  CHECK_THROWS_AS(p.daemon(true), UsageError);
  CHECK_FALSE(p.daemon());
}

TEST_CASE("close() while running throws UsageError", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  CHECK_THROWS_AS(p.close(), UsageError);
  CHECK(p.is_alive());  // still usable
  gate.release();
  p.join();
  CHECK_NOTHROW(p.close());
  CHECK_NOTHROW(p.close());  // a second close() does nothing
}

TEST_CASE("every call but close() throws UsageError after close", "[process]") {
  Process p([] {});
  p.name("closed-one");
  SECTION("after start, join, close") {
    p.start();
    t::ScopeExit cleanup([&] { t::kill_and_join(p); });
    p.join();
    const auto fds_before_close = t::open_fds().size();
    p.close();
    CHECK(t::open_fds().size() < fds_before_close);  // the sentinel was released
  }
  SECTION("close on a never-started Process") { p.close(); }
  CHECK_THROWS_AS(p.join(), UsageError);
  CHECK_THROWS_AS(p.join(0s), UsageError);
  CHECK_THROWS_AS(p.is_alive(), UsageError);
  CHECK_THROWS_AS(p.exitcode(), UsageError);
  CHECK_THROWS_AS(p.exit_status(), UsageError);
  CHECK_THROWS_AS(p.terminate(), UsageError);
  CHECK_THROWS_AS(p.kill(), UsageError);
  CHECK_THROWS_AS(p.sentinel(), UsageError);
  CHECK_THROWS_AS(p.start(), UsageError);
  CHECK_NOTHROW(p.close());
  CHECK(p.name() == "closed-one");  // the getters still answer
  CHECK_FALSE(p.daemon());
  CHECK(t::raw_children().empty());
}

TEST_CASE("a daemon process cannot start children of its own", "[process]") {
  // The daemon child tries; it reports what happened through its exit code.
  Process d([] {
    try {
      Process c([] {});
      c.start();
      c.join();
      mproc::exit(10);  // started: wrong
    } catch (const UsageError&) {
      mproc::exit(42);
    } catch (...) {
      mproc::exit(43);
    }
  });
  d.daemon(true);
  CHECK(d.daemon());
  d.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(d); });
  d.join();
  INFO("42: UsageError as required; 10: the child was started; 43: another exception");
  CHECK(d.exitcode() == 42);
}

TEST_CASE("join from a process that is not the child's parent throws UsageError", "[process]") {
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  // A raw fork of this process holds a copy of p; it is not p's child's parent.
  auto other = t::RawChild::fork([&p]() -> int {
    try {
      p.join(0s);
      return 10;
    } catch (const UsageError&) {
      return 42;
    } catch (...) {
      return 43;
    }
  });
  auto st = other.wait_for(10s);
  REQUIRE(st);
  INFO("raw child " << t::describe_status(*st) << " (42: UsageError as required)");
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 42));
  gate.release();
  p.join();
  CHECK(p.exitcode() == 0);
}

// ---------------------------------------------------------------------------------------------------
// Names, current_process, parent_process
// ---------------------------------------------------------------------------------------------------

TEST_CASE("default names are Process-N counting up by one", "[process]") {
  Process a([] {}), b([] {});
  const long na = process_number(a.name()), nb = process_number(b.name());
  INFO(a.name() << ", " << b.name());
  CHECK(na >= 1);
  CHECK(nb == na + 1);
  a.start();
  b.start();
  t::ScopeExit cleanup([&] {
    t::kill_and_join(a);
    t::kill_and_join(b);
  });
  a.join();
  b.join();
  CHECK(process_number(a.name()) == na);  // unchanged by start()
  CHECK(process_number(b.name()) == nb);
  Process c;
  c.name("custom");
  CHECK(c.name() == "custom");
}

TEST_CASE("a fresh program names its Processes Process-1 and Process-2 and a child's children Process-1 colon N", "[process]") {
  auto h = t::launch_helper({"names"});
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  const std::string out = t::read_to_eof(h.out.get(), 5s);
  const std::string err = t::read_to_eof(h.err.get(), 5s);
  INFO("helper " << t::describe_status(*st) << "\nstdout:\n" << out << "stderr:\n" << err);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  const auto lines = t::split_lines(out);
  CHECK(field(lines, "main") == "MainProcess");
  CHECK(field(lines, "a") == "Process-1");
  CHECK(field(lines, "b") == "Process-2");
  CHECK(field(lines, "a.child1") == "Process-1:1");
  CHECK(field(lines, "a.child2") == "Process-1:2");
  CHECK(field(lines, "c.self") == "Process-1:1");
}

TEST_CASE("current_process() is MainProcess in the main process and the Process in the child", "[process]") {
  const auto me = mproc::current_process();
  CHECK(me.name == "MainProcess");
  CHECK(me.pid == ::getpid());
  CHECK_FALSE(me.daemon);

  auto daemon_flag = GENERATE(false, true);
  auto out = t::make_pipe();
  Process p([w = out.w.get()] {
    auto self = mproc::current_process();
    t::write_str(w, self.name + "\n" + std::to_string(self.pid) + "\n" + (self.daemon ? "daemon" : "not-daemon") +
                        "\n" + std::to_string(::getpid()) + "\n");
  });
  p.name("worker-7").daemon(daemon_flag);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  out.w.reset();
  const auto lines = t::split_lines(t::read_to_eof(out.r.get(), 5s));
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "worker-7");
  CHECK(lines[1] == std::to_string(*p.pid()));
  CHECK(lines[2] == (daemon_flag ? "daemon" : "not-daemon"));
  CHECK(lines[3] == std::to_string(*p.pid()));
}

TEST_CASE("proc comm shows the Process name cut to 15 bytes", "[process]") {
  std::string name, expected;
  SECTION("a long name is cut") {
    name = "abcdefghijklmnopqrstuvwxyz";
    expected = "abcdefghijklmno";
  }
  SECTION("a default name") {
    name = "";
  }
  t::Gate gate;
  Process p([g = gate.child()] { g.arrive_and_wait(); });
  if (!name.empty()) p.name(name);
  if (expected.empty()) expected = p.name().substr(0, 15);
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());  // the target runs: the child has set its name by now
  CHECK(t::read_comm(*p.pid()) == expected);
  gate.release();
  p.join();
}

TEST_CASE("parent_process() is the parent in the child and nullopt in the main process", "[process]") {
  CHECK_FALSE(mproc::parent_process());
  auto out = t::make_pipe();
  Process p([w = out.w.get()] {
    auto pp = mproc::parent_process();
    t::write_str(w, pp ? std::to_string(pp->pid) + " " + pp->name : std::string("none"));
  });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  out.w.reset();
  CHECK(t::read_to_eof(out.r.get(), 5s) == std::to_string(::getpid()) + " MainProcess");
}

TEST_CASE("a child's first child is named after its parent with colon 1 and knows its parent", "[process]") {
  auto out = t::make_pipe();
  Process a([w = out.w.get()] {
    auto inner = t::make_pipe();
    Process c([iw = inner.w.get()] {
      auto self = mproc::current_process();
      auto pp = mproc::parent_process();
      t::write_str(iw, self.name + "|" + (pp ? pp->name + "|" + std::to_string(pp->pid) : std::string("none")));
    });
    c.start();
    c.join();
    inner.w.reset();
    t::write_str(w, c.name() + "\n" + t::read_to_eof(inner.r.get(), 5s) + "\n" + std::to_string(::getpid()) + "\n");
  });
  const std::string a_name = a.name();
  a.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(a); });
  a.join();
  out.w.reset();
  CHECK(a.exitcode() == 0);
  const auto lines = t::split_lines(t::read_to_eof(out.r.get(), 5s));
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == a_name + ":1");
  CHECK(lines[1] == a_name + ":1|" + a_name + "|" + lines[2]);
}

// ---------------------------------------------------------------------------------------------------
// Many children, threads, active_children, cpu counts
// ---------------------------------------------------------------------------------------------------

TEST_CASE("200 start and join cycles leave no zombie and the fd count unchanged", "[process]") {
  {  // one cycle first, so that anything created once per process exists before the baseline
    Process p([] {});
    p.start();
    p.join();
  }
  const auto fds_before = t::open_fds();
  int bad = 0;
  for (int i = 0; i < 200; ++i) {
    Process p([] {});
    p.start();
    p.join();
    if (p.exitcode() != 0) ++bad;
  }
  CHECK(bad == 0);
  CHECK(mproc::count_zombies() == 0);
  CHECK(t::raw_zombies() == 0);
  CHECK(t::raw_children().empty());
  const auto fds_after = t::open_fds();
  std::string diff;
  for (auto& [fd, target] : fds_after)
    if (!fds_before.count(fd)) diff += " " + std::to_string(fd) + "->" + target;
  INFO("new fds:" << diff);
  CHECK(fds_after.size() == fds_before.size());
  CHECK(diff.empty());
}

TEST_CASE("100 Processes forked while 8 threads allocate all exit 0", "[process]") {
#if MPROC_TEST_ASAN
  // Not under ASan: GCC 12's ASan allocator does not hold its own locks across fork() (glibc's malloc
  // does, through its atfork handlers), so a child forked while another thread is inside ASan's
  // malloc can block forever on its first allocation: a limit of the sanitizer, not of mproc, seen as
  // a child stuck in __sanitizer::SizeClassAllocator64::GetFromAllocator. The normal build runs it.
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
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&stop, &rounds, i] {
      std::vector<std::string> keep;
      while (!stop.load(std::memory_order_relaxed)) {
        auto* v = new std::vector<int>(64 + i, i);
        std::string s = "thread-" + std::to_string(i) + "-" + std::to_string(v->size());
        keep.push_back(s + s);
        if (keep.size() > 32) keep.clear();
        delete v;
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
    });
  // The threads are really busy before the first fork.
  REQUIRE(t::wait_until([&] { return rounds.load() > 10000; }, 10s));

  std::vector<Process> children;
  children.reserve(100);
  t::ScopeExit cleanup([&] { t::kill_and_join(children); });
  for (int i = 0; i < 100; ++i) {
    children.emplace_back([i] {
      std::string s(1000 + i, 'c');
      std::vector<std::string> v;
      for (int k = 0; k < 64; ++k) v.push_back(s + std::to_string(k));
      auto* q = new std::vector<int>(1000, 7);
      const bool ok = v.size() == 64 && (*q)[999] == 7;
      delete q;
      if (!ok) mproc::exit(3);
    });
    children.back().start();
  }
  int hung = 0, bad = 0;
  for (auto& p : children) {
    if (!p.join(30s)) {  // a deadlocked child would never end: count it, kill it
      ++hung;
      p.kill();
      p.join();
    } else if (p.exitcode() != 0) {
      ++bad;
    }
  }
  CHECK(hung == 0);
  CHECK(bad == 0);
  CHECK(mproc::count_zombies() == 0);
}

TEST_CASE("active_children() lists live children and not ended ones", "[process]") {
  std::vector<std::unique_ptr<t::Gate>> gates;
  std::vector<Process> ps;
  t::ScopeExit cleanup([&] { t::kill_and_join(ps); });
  const char* names[] = {"ac-a", "ac-b", "ac-c"};
  for (auto* n : names) {
    gates.push_back(std::make_unique<t::Gate>());
    ps.emplace_back([g = gates.back()->child()] { g.arrive_and_wait(); });
    ps.back().name(n).start();
    REQUIRE(gates.back()->wait_ready());
  }
  auto has = [](const std::vector<mproc::ProcessInfo>& v, const Process& p) {
    return std::any_of(v.begin(), v.end(), [&](auto& i) { return i.pid == *p.pid() && i.name == p.name(); });
  };
  auto kids = mproc::active_children();
  CHECK(kids.size() == 3);
  CHECK(has(kids, ps[0]));
  CHECK(has(kids, ps[1]));
  CHECK(has(kids, ps[2]));

  // ps[1] ends; nobody joins it.
  gates[1]->release();
  pollfd pfd{ps[1].sentinel(), POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 10000) == 1);
  kids = mproc::active_children();
  CHECK(kids.size() == 2);
  CHECK(has(kids, ps[0]));
  CHECK_FALSE(has(kids, ps[1]));
  CHECK(has(kids, ps[2]));
  CHECK(t::is_gone(*ps[1].pid()));  // active_children() reaped it
  CHECK(ps[1].exitcode() == 0);

  gates[0]->release();
  gates[2]->release();
  for (auto& p : ps) p.join();
  CHECK(mproc::active_children().empty());
}

TEST_CASE("cpu_count and process_cpu_count", "[process]") {
  const unsigned n = mproc::cpu_count();
  CHECK(n >= 1);
  CHECK(static_cast<long>(n) == ::sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  const unsigned mine = mproc::process_cpu_count();
  CHECK(mine >= 1);
  CHECK(mine <= n);
  CHECK(static_cast<int>(mine) == CPU_COUNT(&set));

  // Pinned to one CPU (in a raw child, so the test runner keeps its affinity): process_cpu_count() is 1.
  if (CPU_COUNT(&set) >= 2) {
    auto child = t::RawChild::fork([&set]() -> int {
      cpu_set_t one;
      CPU_ZERO(&one);
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) {
          CPU_SET(c, &one);
          break;
        }
      if (::sched_setaffinity(0, sizeof one, &one) != 0) return 10;
      if (mproc::process_cpu_count() != 1) return 11;
      if (mproc::cpu_count() < 2) return 12;
      return 0;
    });
    auto st = child.wait_for(10s);
    REQUIRE(st);
    INFO(t::describe_status(*st) << " (11: process_cpu_count ignores the affinity mask)");
    CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  }
}

// ---------------------------------------------------------------------------------------------------
// Destructor semantics
// ---------------------------------------------------------------------------------------------------

TEST_CASE("destroying a running daemon Process terminates and reaps it", "[process]") {
  t::Gate gate;
  pid_t pid = -1;
  t::ScopeExit cleanup([&] { t::kill_owned(pid); });
  {
    Process p([g = gate.child()] { g.arrive_and_wait(); });
    p.daemon(true).start();
    pid = *p.pid();
    REQUIRE(gate.wait_ready());
  }
  CHECK(t::is_gone(pid));  // terminated and reaped before the destructor returned
  auto st = mproc::Reaper::instance().status(pid);
  REQUIRE(st);
  CHECK(st->exitcode() == -SIGTERM);
}

TEST_CASE("destroying a running non-daemon Process leaves it running and the reaper reaps it later", "[process]") {
  auto& reaper = mproc::Reaper::instance();
  const std::size_t owned0 = reaper.owned();
  t::Gate gate;
  pid_t pid = -1;
  t::ScopeExit cleanup([&] { t::kill_owned(pid); });
  {
    Process p([g = gate.child()] {
      g.arrive_and_wait();
      mproc::exit(5);
    });
    p.start();
    pid = *p.pid();
    REQUIRE(gate.wait_ready());
  }
  auto st = t::proc_stat(pid);
  REQUIRE(st);
  CHECK(st->state != 'Z');  // still running
  CHECK(reaper.owned() == owned0 + 1);
  CHECK_FALSE(reaper.status(pid));
  gate.release();  // now it finishes its work
  REQUIRE(t::wait_until([&] { return t::is_ended(pid); }, 10s));
  REQUIRE(t::wait_until(
      [&] {
        reaper.reap();
        return t::is_gone(pid);
      },
      5s));
  auto status = reaper.status(pid);
  REQUIRE(status);
  CHECK(status->exitcode() == 5);
  CHECK(reaper.owned() == owned0);
}

// ---------------------------------------------------------------------------------------------------
// Parent exit (helper program)
// ---------------------------------------------------------------------------------------------------

namespace {
pid_t read_pid_line(t::LineReader& out, const std::string& key) {
  auto line = out.next(20s);
  if (!line || line->rfind(key + "=", 0) != 0) return -1;
  return static_cast<pid_t>(std::stol(line->substr(key.size() + 1)));
}
// Ends a helper's leftover child that is not ours any more, after checking it is the one we started.
void kill_if_leftover(pid_t pid, const std::string& comm) {
  if (pid > 0 && !t::is_ended(pid) && t::read_comm(pid) == comm) ::kill(pid, SIGKILL);
}
}  // namespace

TEST_CASE("a parent that exits normally leaves no live daemon child", "[process][parent_exit]") {
  const std::string mode = GENERATE(std::string("daemon-return"), std::string("daemon-exit"));
  auto h = t::launch_helper({mode});
  t::LineReader out(h.out.get());
  const pid_t daemon = read_pid_line(out, "daemon");
  t::ScopeExit cleanup([&] { kill_if_leftover(daemon, "mproc-sleeper"); });
  REQUIRE(daemon > 0);
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  // The helper's exit has completed: its daemon must already be gone (or an unreaped orphan). Looked
  // at right away, before anything else can give it time to die.
  const bool ended = t::is_ended(daemon);
  const auto ds = t::proc_stat(daemon);
  const std::string err = t::read_to_eof(h.err.get(), 1s);  // diagnostics only, after the snapshot
  INFO(mode << ": helper " << t::describe_status(*st) << "; daemon state "
            << (ds ? std::string(1, ds->state) : std::string("gone")) << "; stderr: " << err);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  CHECK(ended);
}

TEST_CASE("a parent killed by SIGKILL takes its daemon child down within 1 s", "[process][parent_exit]") {
  auto h = t::launch_helper({"daemon-sigkill"});
  t::LineReader out(h.out.get());
  const pid_t daemon = read_pid_line(out, "daemon");
  t::ScopeExit cleanup([&] { kill_if_leftover(daemon, "mproc-sleeper"); });
  REQUIRE(daemon > 0);
  auto ds = t::proc_stat(daemon);
  REQUIRE(ds);
  REQUIRE(ds->state != 'Z');
  CHECK(ds->comm == "mproc-sleeper");

  ::kill(h.proc.pid(), SIGKILL);
  const auto t0 = t::Clock::now();
  auto st = h.proc.wait_for(10s);
  REQUIRE(st);
  CHECK((WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL));
  // The contract is 1 s; the bound here is 2 s so a loaded 2-core machine does not fail it (the daemon
  // sees its lifeline pipe's EOF as the parent dies: 0.2-15 ms measured with two busy loops beside).
  // The measured time is printed.
  const bool ended = t::wait_until([&] { return t::is_ended(daemon); }, 2000ms);
  const double took = t::ms_since(t0);
  WARN("daemon ended " << took << " ms after its parent was SIGKILLed");
  CHECK(ended);
}

TEST_CASE("a parent's exit waits until its non-daemon child finished its work", "[process][parent_exit]") {
  const std::string how = GENERATE(std::string("return"), std::string("exit"), std::string("destroyed"));
  const std::string marker =
      (std::filesystem::temp_directory_path() / ("mproc-test-marker-" + std::to_string(::getpid()) + "-" + how))
          .string();
  std::filesystem::remove(marker);
  t::ScopeExit remove_marker([&] { std::filesystem::remove(marker); });

  auto h = t::launch_helper({"nondaemon", marker, how});
  t::LineReader out(h.out.get());
  const pid_t child = read_pid_line(out, "child");
  t::ScopeExit cleanup([&] { kill_if_leftover(child, "Process-1"); });
  REQUIRE(child > 0);
  const auto t0 = t::Clock::now();
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  const double took = t::ms_since(t0);
  // The child writes the marker at the end of its work: it must be there, and the child gone, as soon
  // as the parent's exit has completed. Looked at right away (reading the helper's stderr to EOF
  // first would wait for an orphaned child and hide the bug).
  std::string content;
  {
    std::ifstream f(marker);
    std::getline(f, content);
  }
  const bool child_ended = t::is_ended(child);
  const std::string err = t::read_to_eof(h.err.get(), 1s);  // diagnostics only, after the snapshot
  INFO(how << ": helper " << t::describe_status(*st) << " " << took << " ms after it reported its child; stderr: " << err);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  CHECK(content == "done");
  CHECK(child_ended);
}

// ---------------------------------------------------------------------------------------------------
// MPROC_TRACE
// ---------------------------------------------------------------------------------------------------

namespace {
struct TraceRun {
  int status = -1;
  pid_t child = -1;
  std::string err;
};
TraceRun run_trace_helper(const std::vector<std::string>& args,
                          const std::vector<std::pair<std::string, std::string>>& env) {
  TraceRun r;
  auto h = t::launch_helper(args, env);
  t::LineReader out(h.out.get());
  r.child = read_pid_line(out, "child");
  auto st = h.proc.wait_for(20s);
  r.status = st ? *st : -1;
  r.err = t::read_to_eof(h.err.get(), 5s);
  return r;
}
}  // namespace

TEST_CASE("MPROC_TRACE=1 prints a line for fork and exit with status and reap each with the pid", "[process][trace]") {
  std::vector<std::string> args{"trace"};
  std::vector<std::pair<std::string, std::string>> env{{"MPROC_TRACE", "1"}};
  SECTION("through the environment") {}
  SECTION("through set_trace(true)") {
    args.push_back("api");
    env.clear();
  }
  const auto r = run_trace_helper(args, env);
  INFO("helper " << t::describe_status(r.status) << ", child " << r.child << ", stderr:\n" << r.err);
  REQUIRE(r.child > 0);
  CHECK((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
  const auto lines = t::split_lines(r.err);
  int fork_line = -1, exit_line = -1, reap_line = -1;
  for (int i = 0; i < static_cast<int>(lines.size()); ++i) {
    const auto& l = lines[i];
    if (!mentions_pid(l, r.child)) continue;
    if (fork_line < 0 && contains(l, "fork")) fork_line = i;
    if (exit_line < 0 && contains(l, "exit") && !contains(l, "reap") && contains(l, "code 3")) exit_line = i;
    if (reap_line < 0 && contains(l, "reap")) reap_line = i;
  }
  CHECK(fork_line >= 0);
  CHECK(exit_line >= 0);
  CHECK(reap_line >= 0);
}

TEST_CASE("without MPROC_TRACE nothing is traced", "[process][trace]") {
  const auto r = run_trace_helper({"trace"}, {});
  INFO("stderr:\n" << r.err);
  REQUIRE(r.child > 0);
  CHECK((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
  for (auto& l : t::split_lines(r.err)) CHECK_FALSE(mentions_pid(l, r.child));
}

TEST_CASE("std::cout output with its own buffer is flushed before start and at the child's exit, once",
          "[process]") {
  // start() flushes cout so its buffered bytes are not inherited (and printed again by the child), and
  // the child's exit flushes what its target wrote. Both with sync_with_stdio(false), where cout has a
  // buffer of its own, and with a user's buffer that keeps bytes until sync(). In a raw-forked
  // sub-process, so that neither change reaches the test binary's streams.
  const bool own_rdbuf = GENERATE(false, true);
  auto out = t::make_pipe();
  auto sub = t::RawChild::fork([w = out.w.get(), own_rdbuf]() -> int {
    ::dup2(w, 1);
    t::HoldUntilSync hold(1);
    if (own_rdbuf)
      std::cout.rdbuf(&hold);
    else
      std::ios::sync_with_stdio(false);
    std::cout << "before;";  // not flushed
    Process p([] { std::cout << "child;"; });  // not flushed either: the child's exit must
    p.start();
    p.join();
    std::cout << "after" << std::flush;
    std::cout.rdbuf(nullptr);  // hold goes out of scope here
    return p.exitcode() == 0 ? 0 : 1;
  });
  auto st = sub.wait_for(10s);
  REQUIRE(st);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  out.w.reset();
  CHECK(t::read_to_eof(out.r.get(), 5s) == "before;child;after");
}

TEST_CASE("std::cout given a holding buffer by a program's static initialiser is flushed in the child too",
          "[process]") {
  // mproc skips flushing a standard stream only while it has the buffer it started with and that
  // holds nothing. "Started with" is taken before any initialiser of the program runs, although mproc
  // is linked as a static library (whose initialisers would otherwise run after the program's).
  auto h = t::launch_helper({"cout-held"}, {{"MPROC_TEST_HOLD_COUT", "1"}});
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  const std::string out = t::read_to_eof(h.out.get(), 5s);
  const std::string err = t::read_to_eof(h.err.get(), 5s);
  INFO("helper " << t::describe_status(*st) << "\nstderr:\n" << err);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  CHECK(out == "before;child;after");
}
