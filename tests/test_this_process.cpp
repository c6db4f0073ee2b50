// tests/test_this_process.cpp — mproc::this_process (API.md §6), Node's `process` object: ids, argv,
// exec path, cwd/chdir, environment, memory usage, on_exit hooks and on_signal handlers.
#include "catch.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

namespace tp = mproc::this_process;
namespace t = mproc_test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// Installs a plain handler for signo for one scope (and restores the old disposition after): it is
/// the "previous disposition" the library must restore, and it keeps a stray signal from killing the
/// test runner if the library failed to install its own.
class PreviousHandler {
 public:
  explicit PreviousHandler(int signo) : signo_(signo) {
    hits_ = 0;
    struct sigaction sa {};
    sa.sa_handler = [](int) { hits_ = hits_ + 1; };
    sigemptyset(&sa.sa_mask);
    ::sigaction(signo_, &sa, &old_);
  }
  ~PreviousHandler() { ::sigaction(signo_, &old_, nullptr); }
  PreviousHandler(const PreviousHandler&) = delete;
  PreviousHandler& operator=(const PreviousHandler&) = delete;
  static int hits() { return hits_; }

 private:
  static inline volatile sig_atomic_t hits_ = 0;
  int signo_;
  struct sigaction old_ {};
};

}  // namespace

TEST_CASE("this_process pid and ppid", "[this_process]") {
  CHECK(tp::pid() == ::getpid());
  CHECK(tp::ppid() == ::getppid());
}

TEST_CASE("this_process argv is the test binary's command line and exec_path its executable", "[this_process]") {
  const auto args = tp::argv();
  REQUIRE_FALSE(args.empty());
  CHECK(args == t::test_argv());
  CHECK(args[0].find("mproc_tests") != std::string::npos);
  CHECK(tp::exec_path().filename() == "mproc_tests");
  CHECK(tp::exec_path() == fs::read_symlink("/proc/self/exe"));
}

TEST_CASE("this_process setenv then getenv and env", "[this_process]") {
  const std::string name = "MPROC_TEST_VAR_" + std::to_string(::getpid());
  t::ScopeExit unset([&] { ::unsetenv(name.c_str()); });
  CHECK_FALSE(tp::getenv(name));
  tp::setenv(name, "first value");
  CHECK(tp::getenv(name) == "first value");
  REQUIRE(std::getenv(name.c_str()));
  CHECK(std::string(std::getenv(name.c_str())) == "first value");
  tp::setenv(name, "second=value");  // overwrites; '=' is fine in a value
  CHECK(tp::getenv(name) == "second=value");
  const auto all = tp::env();
  REQUIRE(all.count(name) == 1);
  CHECK(all.at(name) == "second=value");
  CHECK(all.count("PATH") == (std::getenv("PATH") ? 1u : 0u));
  CHECK_THROWS_AS(tp::setenv("", "x"), std::system_error);
  CHECK_THROWS_AS(tp::setenv("A=B", "x"), std::system_error);
}

TEST_CASE("this_process cwd and chdir", "[this_process]") {
  const fs::path before = tp::cwd();
  CHECK(before == fs::current_path());
  t::ScopeExit back([&] { fs::current_path(before); });
  tp::chdir("/tmp");
  CHECK(tp::cwd() == fs::canonical("/tmp"));
  CHECK(fs::current_path() == fs::canonical("/tmp"));
  tp::chdir(before);
  CHECK(tp::cwd() == before);
  CHECK_THROWS_AS(tp::chdir("/nonexistent/mproc/test/dir"), std::system_error);
  CHECK(tp::cwd() == before);
}

TEST_CASE("this_process memory_usage is plausible and grows with touched memory", "[this_process]") {
  const auto m = tp::memory_usage();
  CHECK(m.rss > 0);
  CHECK(m.rss < (std::size_t{24} << 30));
  CHECK(m.vms >= m.rss);
  CHECK(m.shared <= m.rss);

  constexpr std::size_t size = 64u << 20;
  std::vector<char> big(size);
  for (std::size_t i = 0; i < size; i += 4096) big[i] = static_cast<char>(i);
  const auto m2 = tp::memory_usage();
  INFO("rss before " << m.rss << ", after touching 64 MiB " << m2.rss);
  CHECK(m2.rss >= m.rss + size / 2);
  CHECK(m2.vms >= m.vms + size / 2);
}

TEST_CASE("on_exit hooks run at normal exit with the exit code in registration order", "[this_process]") {
  struct Case {
    std::string how;
    int code;
  };
  const Case c = GENERATE(Case{"exit5", 5}, Case{"return4", 4}, Case{"mproc-exit8", 8});
  auto h = t::launch_helper({"on-exit", c.how});
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  const std::string out = t::read_to_eof(h.out.get(), 5s);
  INFO(c.how << ": helper " << t::describe_status(*st) << "\nstdout:\n"
             << out << "stderr:\n"
             << t::read_to_eof(h.err.get(), 1s));
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == c.code));
  // hook1 and hook2 in registration order; the destroyed and the reset subscriptions do not run.
  const std::string code = std::to_string(c.code);
  CHECK(out == "hook1 code=" + code + "\nhook2 code=" + code + "\n");
}

TEST_CASE("on_exit registered in a Process child runs when the child exits", "[this_process]") {
  int code = 0;
  SECTION("mproc::exit(6)") { code = 6; }
  SECTION("the target returns") { code = 0; }
  auto out = t::make_pipe();
  mproc::Process p([w = out.w.get(), code] {
    // Kept alive past the end of the target (the child's memory goes with it).
    static tp::Subscription sub;
    sub = tp::on_exit([w](int c) { t::write_str(w, "code=" + std::to_string(c)); });
    if (code != 0) mproc::exit(code);
  });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  out.w.reset();
  CHECK(p.exitcode() == code);
  CHECK(t::read_to_eof(out.r.get(), 5s) == "code=" + std::to_string(code));
}

TEST_CASE("a parent's on_exit hooks do not run in its children", "[this_process]") {
  auto out = t::make_pipe();
  auto sub = tp::on_exit([w = out.w.get()](int) { t::write_str(w, "parent hook ran"); });
  REQUIRE(sub);
  mproc::Process returns([] {});
  mproc::Process exits([] { mproc::exit(3); });
  returns.start();
  exits.start();
  t::ScopeExit cleanup([&] {
    t::kill_and_join(returns);
    t::kill_and_join(exits);
  });
  returns.join();
  exits.join();
  CHECK(returns.exitcode() == 0);
  CHECK(exits.exitcode() == 3);
  sub.reset();  // it must not run at this test runner's exit either
  CHECK_FALSE(sub);
  out.w.reset();
  CHECK(t::read_to_eof(out.r.get(), 5s).empty());
}

TEST_CASE("on_signal delivers SIGUSR1 to a handler on an ordinary thread", "[this_process]") {
  PreviousHandler previous(SIGUSR1);
  const auto main_id = std::this_thread::get_id();
  auto notify = t::make_pipe();
  std::mutex m;
  std::thread::id handler_thread;
  int seen = 0;
  auto sub = tp::on_signal(SIGUSR1, [&, w = notify.w.get()](int signo) {
    {
      std::lock_guard lock(m);
      handler_thread = std::this_thread::get_id();
      seen = signo;
    }
    t::write_str(w, "s");
  });
  REQUIRE(sub);
  SECTION("kill(getpid())") { ::kill(::getpid(), SIGUSR1); }
  SECTION("raise()") { ::raise(SIGUSR1); }
  REQUIRE(t::wait_readable(notify.r.get(), 5s));
  std::lock_guard lock(m);
  CHECK(seen == SIGUSR1);
  CHECK(handler_thread != main_id);
  CHECK(handler_thread != std::thread::id());
}

TEST_CASE("destroying the on_signal Subscription unsubscribes and restores the previous handler", "[this_process]") {
  PreviousHandler previous(SIGUSR2);
  auto notify = t::make_pipe();
  {
    auto sub = tp::on_signal(SIGUSR2, [w = notify.w.get()](int) { t::write_str(w, "s"); });
    ::kill(::getpid(), SIGUSR2);
    REQUIRE(t::wait_readable(notify.r.get(), 5s));
    char c;
    REQUIRE(::read(notify.r.get(), &c, 1) == 1);
  }  // unsubscribed here
  const int hits_before = PreviousHandler::hits();
  ::kill(::getpid(), SIGUSR2);
  CHECK(t::wait_until([&] { return PreviousHandler::hits() == hits_before + 1; }, 2s));
  CHECK_FALSE(t::wait_readable(notify.r.get(), 200ms));  // the handler did not run again
}

TEST_CASE("two on_signal subscriptions both run and resetting one leaves the other", "[this_process]") {
  PreviousHandler previous(SIGUSR2);
  auto a_pipe = t::make_pipe(), b_pipe = t::make_pipe();
  auto a = tp::on_signal(SIGUSR2, [w = a_pipe.w.get()](int) { t::write_str(w, "a"); });
  auto b = tp::on_signal(SIGUSR2, [w = b_pipe.w.get()](int) { t::write_str(w, "b"); });
  ::kill(::getpid(), SIGUSR2);
  CHECK(t::read_n(a_pipe.r.get(), 1, 5s) == "a");
  CHECK(t::read_n(b_pipe.r.get(), 1, 5s) == "b");
  a.reset();
  CHECK_FALSE(a);
  ::kill(::getpid(), SIGUSR2);
  CHECK(t::read_n(b_pipe.r.get(), 1, 5s) == "b");
  CHECK_FALSE(t::wait_readable(a_pipe.r.get(), 200ms));
  CHECK(PreviousHandler::hits() == 0);  // still subscribed through b: the old handler stays out
  tp::Subscription moved = std::move(b);  // a moved Subscription keeps the hook
  CHECK(moved);
  ::kill(::getpid(), SIGUSR2);
  CHECK(t::read_n(b_pipe.r.get(), 1, 5s) == "b");
}

TEST_CASE("on_signal refuses SIGKILL and SIGSTOP and signal numbers out of range", "[this_process]") {
  CHECK_THROWS_AS(tp::on_signal(SIGKILL, [](int) {}), mproc::UsageError);
  CHECK_THROWS_AS(tp::on_signal(SIGSTOP, [](int) {}), mproc::UsageError);
  CHECK_THROWS_AS(tp::on_signal(0, [](int) {}), mproc::UsageError);
  CHECK_THROWS_AS(tp::on_signal(100000, [](int) {}), mproc::UsageError);
}

TEST_CASE("a forked child starts without the parent's signal subscriptions", "[this_process]") {
  // In the child SIGUSR1 is back to SIG_DFL: raising it kills the child with SIGUSR1.
  PreviousHandler previous(SIGUSR1);
  auto sub = tp::on_signal(SIGUSR1, [](int) {});
  mproc::Process p([] {
    ::raise(SIGUSR1);
    mproc::exit(0);
  });
  p.start();
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.join();
  CHECK(p.exitcode() == -SIGUSR1);
}
