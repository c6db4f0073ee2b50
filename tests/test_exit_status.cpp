// tests/test_exit_status.cpp — mproc::ExitStatus: decoding raw waitpid statuses, Python's exitcode
// convention and the to_string() wording.
#include "catch.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc/exit_status.hpp>

#include "test_util.hpp"

using mproc::ExitStatus;
namespace t = mproc_test;
using namespace std::chrono_literals;

TEST_CASE("ExitStatus default reads as exited with code 0", "[exit_status]") {
  ExitStatus s;
  CHECK(s.exited());
  CHECK(s.code() == 0);
  CHECK_FALSE(s.signaled());
  CHECK(s.signal() == 0);
  CHECK_FALSE(s.core_dumped());
  CHECK(s.exitcode() == 0);
  CHECK(s.raw() == 0);
  CHECK(s.to_string() == "exited with code 0");
}

TEST_CASE("ExitStatus decodes a normal exit", "[exit_status]") {
  const ExitStatus s = ExitStatus::from_wait_status(3 << 8);
  CHECK(s.exited());
  CHECK(s.code() == 3);
  CHECK_FALSE(s.signaled());
  CHECK(s.signal() == 0);
  CHECK_FALSE(s.core_dumped());
  CHECK(s.exitcode() == 3);
  CHECK(s.raw() == (3 << 8));
  CHECK(s.to_string() == "exited with code 3");

  const ExitStatus top = ExitStatus::from_wait_status(255 << 8);
  CHECK(top.code() == 255);
  CHECK(top.exitcode() == 255);
  CHECK(top.to_string() == "exited with code 255");
}

TEST_CASE("ExitStatus decodes a killing signal", "[exit_status]") {
  const ExitStatus k = ExitStatus::from_wait_status(SIGKILL);
  CHECK_FALSE(k.exited());
  CHECK(k.code() == 0);
  CHECK(k.signaled());
  CHECK(k.signal() == SIGKILL);
  CHECK_FALSE(k.core_dumped());
  CHECK(k.exitcode() == -9);
  CHECK(k.to_string() == "killed by SIGKILL");

  const ExitStatus term = ExitStatus::from_wait_status(SIGTERM);
  CHECK(term.exitcode() == -15);
  CHECK(term.to_string() == "killed by SIGTERM");

  const ExitStatus abrt = ExitStatus::from_wait_status(SIGABRT);
  CHECK(abrt.exitcode() == -6);
  CHECK(abrt.to_string() == "killed by SIGABRT");

  CHECK(ExitStatus::from_wait_status(SIGINT).to_string() == "killed by SIGINT");
  CHECK(ExitStatus::from_wait_status(SIGUSR1).to_string() == "killed by SIGUSR1");
}

TEST_CASE("ExitStatus decodes a core dump", "[exit_status]") {
  const ExitStatus s = ExitStatus::from_wait_status(SIGSEGV | 0x80);  // WCOREFLAG
  CHECK(s.signaled());
  CHECK(s.signal() == SIGSEGV);
  CHECK(s.core_dumped());
  CHECK_FALSE(s.exited());
  CHECK(s.exitcode() == -11);
  CHECK(s.to_string() == "killed by SIGSEGV (core dumped)");
}

TEST_CASE("ExitStatus compares by value", "[exit_status]") {
  CHECK(ExitStatus::from_wait_status(3 << 8) == ExitStatus::from_wait_status(3 << 8));
  CHECK_FALSE(ExitStatus::from_wait_status(3 << 8) == ExitStatus::from_wait_status(4 << 8));
  CHECK_FALSE(ExitStatus::from_wait_status(SIGKILL) == ExitStatus::from_wait_status(9 << 8));
  CHECK(ExitStatus() == ExitStatus::from_wait_status(0));
}

TEST_CASE("ExitStatus agrees with the W macros on statuses from real children", "[exit_status]") {
  SECTION("exit code 42") {
    auto child = t::RawChild::fork([] { return 42; });
    auto st = child.wait_for(10s);
    REQUIRE(st);
    REQUIRE(WIFEXITED(*st));
    const ExitStatus s = ExitStatus::from_wait_status(*st);
    CHECK(s.exited());
    CHECK(s.code() == 42);
    CHECK(s.exitcode() == 42);
    CHECK(s.raw() == *st);
    CHECK(s.to_string() == "exited with code 42");
  }
  SECTION("killed by SIGKILL") {
    t::Gate gate;
    auto child = t::RawChild::fork([g = gate.child()] {
      g.arrive_and_wait();
      return 0;
    });
    REQUIRE(gate.wait_ready());
    ::kill(child.pid(), SIGKILL);
    auto st = child.wait_for(10s);
    REQUIRE(st);
    REQUIRE(WIFSIGNALED(*st));
    const ExitStatus s = ExitStatus::from_wait_status(*st);
    CHECK(s.signaled());
    CHECK(s.signal() == SIGKILL);
    CHECK(s.exitcode() == -SIGKILL);
    CHECK(s.to_string() == "killed by SIGKILL");
  }
}
