// tests/test_posix.cpp — the teaching layer mproc::posix (API.md §5) and the /proc views list_children
// and count_zombies (§4): fork's two return values, waitpid with and without nohang, wait()'s ECHILD,
// niceness, zombies as /proc shows them.
#include "catch.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <system_error>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

namespace posix = mproc::posix;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace {
/// Kills and reaps a posix::fork child if the test did not wait for it.
struct ForkedChild {
  pid_t pid = -1;
  ~ForkedChild() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int st;
      ::waitpid(pid, &st, 0);
    }
  }
};
}  // namespace

TEST_CASE("posix getpid and getppid are the process's ids", "[posix]") {
  CHECK(posix::getpid() == ::getpid());
  CHECK(posix::getppid() == ::getppid());
}

TEST_CASE("posix fork returns 0 in the child and the child's pid in the parent", "[posix]") {
  const pid_t parent = ::getpid();
  ForkedChild guard;
  const pid_t pid = posix::fork();
  if (pid == 0) {
    const bool ok = posix::getppid() == parent && posix::getpid() == ::getpid() && ::getpid() != parent;
    posix::exit_now(ok ? 0 : 1);
  }
  guard.pid = pid;
  REQUIRE(pid > 0);
  CHECK(pid != parent);
  auto r = posix::waitpid(pid);
  REQUIRE(r);
  guard.pid = -1;
  CHECK(r->pid == pid);
  CHECK(r->status.exited());
  CHECK(r->status.code() == 0);
}

TEST_CASE("posix fork flushes stdio first so buffered output is not printed twice", "[posix]") {
  auto out = t::make_pipe();
  auto sub = t::RawChild::fork([w = out.w.get()]() -> int {
    ::dup2(w, 1);  // stdout is a pipe now: fully buffered
    std::printf("once");
    const pid_t pid = posix::fork();
    if (pid == 0) {
      std::fflush(stdout);  // would print "once" a second time if fork had not flushed it
      ::_exit(0);
    }
    posix::waitpid(pid);
    return 0;
  });
  auto st = sub.wait_for(10s);
  REQUIRE(st);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  out.w.reset();
  CHECK(t::read_to_eof(out.r.get(), 5s) == "once");
}

TEST_CASE("posix waitpid with nohang returns nullopt while the child runs", "[posix]") {
  t::Gate gate;
  ForkedChild guard;
  const pid_t pid = posix::fork();
  if (pid == 0) {
    gate.child().arrive_and_wait();
    posix::exit_now(5);
  }
  guard.pid = pid;
  REQUIRE(gate.wait_ready());
  CHECK_FALSE(posix::waitpid(pid, true));
  CHECK_FALSE(posix::waitpid(-1, true));
  gate.release();
  auto r = posix::waitpid(pid);
  REQUIRE(r);
  guard.pid = -1;
  CHECK(r->pid == pid);
  CHECK(r->status.code() == 5);
}

TEST_CASE("posix wait returns any child and throws ECHILD when there is none", "[posix]") {
  // In a raw-forked sub-process: it has no children at all, and nothing else can be waited away.
  auto sub = t::RawChild::fork([]() -> int {
    try {
      posix::wait();
      return 10;
    } catch (const std::system_error& e) {
      if (e.code().value() != ECHILD) return 11;
    }
    try {
      posix::waitpid(-1, true);
      return 12;
    } catch (const std::system_error& e) {
      if (e.code().value() != ECHILD) return 13;
    }
    const pid_t pid = posix::fork();
    if (pid == 0) posix::exit_now(9);
    auto r = posix::wait();
    if (r.pid != pid) return 14;
    if (!r.status.exited() || r.status.code() != 9) return 15;
    return 0;
  });
  auto st = sub.wait_for(10s);
  REQUIRE(st);
  INFO(t::describe_status(*st) << " (10-13: no ECHILD system_error; 14/15: wrong child or status)");
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
}

TEST_CASE("posix waitpid on a pid that is not our child throws ECHILD", "[posix]") {
  try {
    posix::waitpid(1);
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ECHILD);
  }
}

TEST_CASE("posix nice raises niceness and get_priority and set_priority read and write it", "[posix]") {
  t::Gate gate;
  auto sub = t::RawChild::fork([g = gate.child()]() -> int {
    const int before = posix::get_priority();
    const int after = posix::nice(5);
    if (after != std::min(before + 5, 19)) return 10;
    if (posix::get_priority() != after) return 11;
    if (posix::get_priority(::getpid()) != after) return 12;
    const int target = std::min(after + 1, 19);
    posix::set_priority(target);
    if (posix::get_priority() != target) return 13;
    g.arrive_and_wait();  // the parent reads our priority now
    // Lowering niceness needs privilege: drop root first if we have it.
    bool unprivileged = ::geteuid() != 0;
    if (!unprivileged) unprivileged = ::setgid(65534) == 0 && ::setuid(65534) == 0;
    if (unprivileged) {
      rlimit rl{0, 0};
      ::setrlimit(RLIMIT_NICE, &rl);
      try {
        posix::nice(-5);
        return 14;
      } catch (const std::system_error& e) {
        if (e.code().value() != EPERM && e.code().value() != EACCES) return 15;
      }
    }
    return 0;
  });
  REQUIRE(gate.wait_ready());
  const int seen = posix::get_priority(sub.pid());
  const int mine = posix::get_priority();
  gate.release();
  auto st = sub.wait_for(10s);
  REQUIRE(st);
  INFO(t::describe_status(*st) << " (10-13: wrong niceness read back; 14/15: lowering it did not fail with EPERM)");
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  CHECK(seen == std::min(mine + 6, 19));
  CHECK(posix::get_priority() == mine);  // ours is untouched
}

TEST_CASE("posix exit_now ends the child with the status", "[posix]") {
  ForkedChild guard;
  const pid_t pid = posix::fork();
  if (pid == 0) posix::exit_now(77);
  guard.pid = pid;
  auto r = posix::waitpid(pid);
  REQUIRE(r);
  guard.pid = -1;
  CHECK(r->status.code() == 77);
}

TEST_CASE("list_children shows an exited unreaped raw child in state Z and count_zombies counts it", "[posix][reaper]") {
  REQUIRE(mproc::count_zombies() == 0);
  auto child = t::RawChild::fork([] { return 0; });
  const pid_t pid = child.pid();
  auto find = [&]() -> std::optional<mproc::ChildEntry> {
    for (auto& c : mproc::list_children())
      if (c.pid == pid) return c;
    return std::nullopt;
  };
  REQUIRE(t::wait_until(
      [&] {
        auto e = find();
        return e && e->state == 'Z';
      },
      10s));
  auto e = find();
  REQUIRE(e);
  CHECK(e->ppid == ::getpid());
  CHECK(e->comm == t::read_comm(::getpid()));  // a raw fork keeps the parent's name
  CHECK(mproc::count_zombies() == 1);
  CHECK(mproc::count_zombies(::getpid()) == 1);
  CHECK(mproc::list_children(::getpid()).size() == 1);
  auto st = child.wait_for(5s);
  REQUIRE(st);
  CHECK(mproc::count_zombies() == 0);
  CHECK_FALSE(find());
}

TEST_CASE("list_children shows a running Process with its name and state", "[posix][reaper]") {
  t::Gate gate;
  mproc::Process p([g = gate.child()] { g.arrive_and_wait(); });
  p.name("lc-child");
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  REQUIRE(gate.wait_ready());
  auto kids = mproc::list_children();
  auto it = std::find_if(kids.begin(), kids.end(), [&](auto& c) { return c.pid == *p.pid(); });
  REQUIRE(it != kids.end());
  CHECK(it->comm == "lc-child");
  CHECK(it->ppid == ::getpid());
  CHECK(it->state != 'Z');
  CHECK(mproc::count_zombies() == 0);
  CHECK(mproc::list_children(*p.pid()).empty());  // the child has no children
  gate.release();
  p.join();
}
