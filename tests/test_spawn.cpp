// tests/test_spawn.cpp — external programs (API.md §13, mproc/spawn.hpp): exec and exec_file (output,
// exit codes, input, timeout, max_buffer, env, cwd), spawn's ChildProcess (line and bulk reads, no pipe
// deadlock in either direction, wait with a timeout, kill), SpawnError for programs that cannot start,
// the IPC channel (parent_channel in the helper program), what the child inherits (fds, signals,
// session), reaping beside std::system and raw fork, detached children, misuse, EPIPE without SIGPIPE.
//
// Synchronization goes through the children's pipes (EOF, a line) and wait(), never through sleeping;
// the only polling is for /proc states no fd announces (a process that is gone), with generous bounds.
// Every test cleans up what it started: ChildGuard kills and waits a ChildProcess on failure paths.
#include "catch.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

using mproc::ChildProcess;
using mproc::ExecOptions;
using mproc::ExitStatus;
using mproc::SpawnError;
using mproc::SpawnOptions;
using mproc::Stdio;
using mproc::UsageError;
namespace t = mproc_test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Env = std::map<std::string, std::string>;

namespace {

// Bytes 0..255 in a deterministic, non-repeating-looking order (so a lost or reordered chunk shows).
std::string pattern(std::size_t n, std::uint64_t seed = 1) {
  std::string out(n, '\0');
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x & 0xff);
  }
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string line_or(const std::optional<std::string>& line) { return line ? *line : std::string("<nullopt>"); }

bool all_zero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '\0'; });
}

// The children of this process right now, zombies included, read from /proc (not through the library).
std::string describe_children() {
  std::string s;
  for (auto& k : t::raw_children()) s += " pid=" + std::to_string(k.pid) + " state=" + k.state + " comm=" + k.comm;
  return s.empty() ? std::string("none") : s;
}

// Kills (SIGKILL) and waits for a ChildProcess at scope end if it still runs: cleanup for failure paths.
// Never throws (an empty or moved-from ChildProcess is left alone).
class ChildGuard {
 public:
  explicit ChildGuard(ChildProcess& c) : c_(c) {}
  ~ChildGuard() {
    try {
      if (c_.running()) c_.kill(SIGKILL);
      c_.wait();
    } catch (...) {
    }
  }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;

 private:
  ChildProcess& c_;
};

// What a call that should fail to start a program threw.
struct Failure {
  bool spawn_error = false;  // a SpawnError
  int code = 0;              // its code().value()
  bool code_is_system = false;
  std::string what;
  std::string other;  // some other exception, or "no exception"
};
template <class F>
Failure failure_of(F&& f) {
  Failure r;
  try {
    f();
    r.other = "no exception";
  } catch (const SpawnError& e) {
    r.spawn_error = true;
    r.code = e.code().value();
    r.code_is_system = e.code().category() == std::system_category();
    r.what = e.what();
  } catch (const std::exception& e) {
    r.other = std::string("another exception: ") + e.what();
  } catch (...) {
    r.other = "a non-std exception";
  }
  return r;
}
// Starts file and, if that unexpectedly works, ends the program again (nothing left behind either way).
void spawn_and_end(const std::string& file, const std::vector<std::string>& args, SpawnOptions o = {}) {
  ChildProcess c = mproc::spawn(file, args, std::move(o));
  ChildGuard guard(c);
}

// A fresh directory under the temp dir, removed with everything in it at scope end.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("mproc-spawn-test-" + std::to_string(::getpid()) + "-" + name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  /// Creates path()/name with content and the given permission bits; returns its path.
  fs::path file(const std::string& name, const std::string& content, fs::perms perms) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    { std::ofstream(p) << content; }
    fs::permissions(p, perms, fs::perm_options::replace);
    return p;
  }

 private:
  fs::path path_;
};
constexpr auto k0644 = fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read;
constexpr auto k0755 = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                       fs::perms::others_exec;

std::set<int> parse_fds(const std::string& out) {
  std::set<int> fds;
  for (auto& line : t::split_lines(out))
    if (!line.empty()) fds.insert(std::atoi(line.c_str()));
  return fds;
}
std::string show(const std::set<int>& fds) {
  std::string s;
  for (int fd : fds) s += (s.empty() ? "" : " ") + std::to_string(fd);
  return "{" + s + "}";
}

pid_t read_pid_line(t::LineReader& out, const std::string& key) {
  auto line = out.next(20s);
  if (!line || line->rfind(key + "=", 0) != 0) return -1;
  return static_cast<pid_t>(std::stol(line->substr(key.size() + 1)));
}
// Ends a helper's leftover program that is not our child, after checking it is the one we started.
void kill_if_leftover(pid_t pid, const std::string& comm) {
  if (pid > 0 && !t::is_ended(pid) && t::read_comm(pid) == comm) ::kill(pid, SIGKILL);
}

// The hex mask of a "SigXxx:" line of /proc/<pid>/status as printed by grep.
std::string status_field(const std::string& status, const std::string& key) {
  for (auto& line : t::split_lines(status))
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "<missing>";
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// exec / exec_file
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: exec runs a command through the shell and returns out err and the exit code", "[spawn]") {
  auto r = mproc::exec("echo out; echo err 1>&2; exit 3");
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  CHECK(r.status.exited());
  CHECK(r.status.exitcode() == 3);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.truncated);
  INFO("children: " << describe_children());
  CHECK(t::raw_children().empty());
}

TEST_CASE("spawn: exec reports a non-zero exit and a command the shell cannot find as a status", "[spawn]") {
  ExecOptions none;
  mproc::ExecResult r;
  REQUIRE_NOTHROW(r = mproc::exec("exit 7"));
  CHECK(r.status.exited());
  CHECK(r.status.exitcode() == 7);

  REQUIRE_NOTHROW(r = mproc::exec("mproc-no-such-cmd-xyz", none));
  INFO("stderr: " << r.err);
  CHECK(r.status.exited());
  CHECK(r.status.exitcode() == 127);
  CHECK(contains(r.err, "mproc-no-such-cmd-xyz"));
}

TEST_CASE("spawn: exec_file finds a program in PATH and passes args without a shell", "[spawn]") {
  auto r = mproc::exec_file("echo", {"a", "b"});
  CHECK(r.out == "a b\n");
  CHECK(r.err.empty());
  CHECK(r.status.exitcode() == 0);

  // No shell in between: metacharacters reach the program as they are.
  r = mproc::exec_file("echo", {"$HOME", "a;b", "*", "x y"});
  CHECK(r.out == "$HOME a;b * x y\n");

  // argv[0] is `file` as given (sh -c reports it as $0).
  r = mproc::exec_file("sh", {"-c", "echo $0"});
  CHECK(r.out == "sh\n");
  r = mproc::exec_file("/bin/sh", {"-c", "echo $0"});
  CHECK(r.out == "/bin/sh\n");
}

TEST_CASE("spawn: exec_file input reaches stdin and 1 MB comes back whole through cat", "[spawn]") {
  auto r = mproc::exec_file("cat", {}, {.input = "hello"});
  CHECK(r.out == "hello");
  CHECK(r.status.exitcode() == 0);

  // Empty input: stdin is closed at once, so cat ends (it would wait forever on an open stdin).
  r = mproc::exec_file("cat", {});
  CHECK(r.out.empty());
  CHECK(r.status.exitcode() == 0);

  // 1,000,000 bytes (under the default 1 MiB max_buffer): cat writes back while we still write, so
  // exec must read while it writes.
  const std::string big = pattern(1'000'000);
  const auto t0 = t::Clock::now();
  r = mproc::exec_file("cat", {}, {.input = big});
  WARN("1 MB through cat took " << t::ms_since(t0) << " ms");
  CHECK(r.out.size() == big.size());
  CHECK((r.out == big));
  CHECK_FALSE(r.truncated);
  CHECK(r.status.exitcode() == 0);

  // The same through the shell.
  r = mproc::exec("cat", {.input = big});
  CHECK((r.out == big));
  CHECK(r.status.exitcode() == 0);
}

TEST_CASE("spawn: exec timeout sends kill_signal and sets timed_out", "[spawn]") {
  const int sig = GENERATE(SIGTERM, SIGKILL);
  ExecOptions o;
  o.timeout = 200ms;
  if (sig != SIGTERM) o.kill_signal = sig;  // SIGTERM is the default
  const auto t0 = t::Clock::now();
  auto r = mproc::exec("sleep 10", o);
  const double took = t::ms_since(t0);
  INFO("signal " << sig << ": took " << took << " ms, status " << r.status.to_string());
  CHECK(r.timed_out);
  CHECK(r.status.signaled());
  CHECK(r.status.signal() == sig);
  CHECK(took >= 150);
  CHECK(took < 5000);

  // A program that ends in time is not timed out.
  r = mproc::exec("echo fine", {.timeout = 10s});
  CHECK_FALSE(r.timed_out);
  CHECK(r.out == "fine\n");
  CHECK(r.status.exitcode() == 0);
}

TEST_CASE("spawn: exec timeout returns once the shell ended although a program it left holds the pipes",
          "[spawn]") {
  // The shell starts a background sleep that inherits stdout and stderr, prints its pid and waits.
  // On the timeout the shell dies; the orphaned sleep still holds the pipes open, and exec must not
  // wait for their EOF (header: "exec returns once the child has ended").
  const auto t0 = t::Clock::now();
  // 2 s: room for sh to start, fork sleep and print its pid on a loaded machine before the timeout.
  auto r = mproc::exec("sleep 10 & echo $!; wait", {.timeout = 2s});
  const double took = t::ms_since(t0);
  pid_t left = -1;
  if (!r.out.empty()) left = static_cast<pid_t>(std::atol(r.out.c_str()));
  t::ScopeExit cleanup([&] { kill_if_leftover(left, "sleep"); });
  INFO("took " << took << " ms, out '" << r.out << "', status " << r.status.to_string());
  CHECK(left > 0);
  CHECK(r.timed_out);
  CHECK(r.status.signaled());
  CHECK(took < 8000);  // not the sleep's 10 s: exec did not wait for the pipes' EOF
}

TEST_CASE("spawn: exec max_buffer kills the child and keeps exactly max_buffer bytes", "[spawn]") {
  const auto t0 = t::Clock::now();
  SECTION("stdout") {
    auto r = mproc::exec_file("head", {"-c", "10000000", "/dev/zero"}, {.max_buffer = 1000});
    const double took = t::ms_since(t0);
    INFO("took " << took << " ms, status " << r.status.to_string());
    CHECK(r.truncated);
    CHECK(r.out.size() == 1000);
    CHECK(all_zero(r.out));
    CHECK(r.err.empty());
    CHECK(r.status.signaled());
    CHECK_FALSE(r.timed_out);
    CHECK(took < 10000);
  }
  SECTION("stderr") {
    auto r = mproc::exec("head -c 10000000 /dev/zero 1>&2", {.max_buffer = 1000});
    const double took = t::ms_since(t0);
    INFO("took " << took << " ms, status " << r.status.to_string());
    CHECK(r.truncated);
    CHECK(r.err.size() == 1000);
    CHECK(r.out.empty());
    CHECK(r.status.signaled());
    CHECK(took < 10000);
  }
  SECTION("a program that never ends") {
    auto r = mproc::exec_file("yes", {}, {.max_buffer = 4096});
    const double took = t::ms_since(t0);
    INFO("took " << took << " ms, status " << r.status.to_string());
    CHECK(r.truncated);
    CHECK(r.out.size() == 4096);
    CHECK(r.out.substr(0, 4) == "y\ny\n");
    CHECK(r.status.signaled());
    CHECK(took < 10000);
  }
  SECTION("exactly max_buffer bytes is not past it") {
    auto r = mproc::exec_file("head", {"-c", "1000", "/dev/zero"}, {.max_buffer = 1000});
    INFO("status " << r.status.to_string());
    CHECK_FALSE(r.truncated);
    CHECK(r.out.size() == 1000);
    CHECK(r.status.exited());
    CHECK(r.status.exitcode() == 0);
  }
}

TEST_CASE("spawn: env replaces the whole environment and without env the parent's is inherited", "[spawn]") {
  REQUIRE(::setenv("MPROC_SPAWN_PARENT_VAR", "1", 1) == 0);
  t::ScopeExit unset([] { ::unsetenv("MPROC_SPAWN_PARENT_VAR"); });

  auto r = mproc::exec_file("env", {}, {.env = Env{{"ONLY", "yes"}}});
  INFO("env printed:\n" << r.out);
  CHECK(r.status.exitcode() == 0);
  CHECK(contains(r.out, "ONLY=yes"));
  CHECK_FALSE(contains(r.out, "MPROC_SPAWN_PARENT_VAR"));
  CHECK(r.out == "ONLY=yes\n");

  // Without env: ours, as it is at the call (setenv above included).
  r = mproc::exec_file("env", {});
  CHECK(contains(r.out, "MPROC_SPAWN_PARENT_VAR=1\n"));
  CHECK_FALSE(contains(r.out, "ONLY=yes"));

  // The same through spawn and the shell; values with spaces and '=' pass unchanged.
  ChildProcess c = mproc::spawn(
      "/bin/sh", {"-c", "echo \"$A|$B|${MPROC_SPAWN_PARENT_VAR-unset}\""},
      {.env = Env{{"A", "x y"}, {"B", "k=v"}}});
  ChildGuard guard(c);
  CHECK(c.read_all_stdout() == "x y|k=v|unset\n");
  CHECK(c.wait().exitcode() == 0);
}

TEST_CASE("spawn: cwd is honoured and a missing cwd throws SpawnError naming the program", "[spawn]") {
  const std::string tmp = fs::canonical("/tmp").string();
  auto r = mproc::exec_file("pwd", {}, {.cwd = "/tmp"});
  CHECK(r.out == tmp + "\n");
  r = mproc::exec("pwd", {.cwd = "/tmp"});
  CHECK(r.out == tmp + "\n");
  {
    ChildProcess c = mproc::spawn("pwd", {}, {.cwd = "/"});
    ChildGuard guard(c);
    CHECK(c.read_all_stdout() == "/\n");
    CHECK(c.wait().exitcode() == 0);
  }

  SECTION("missing cwd: spawn") {
    auto f = failure_of([] { spawn_and_end("pwd", {}, {.cwd = "/nonexistent-mproc-cwd"}); });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    CHECK(f.spawn_error);
    CHECK(f.code == ENOENT);
    CHECK(contains(f.what, "pwd"));
    CHECK(t::raw_children().empty());
  }
  SECTION("missing cwd: exec_file") {
    auto f = failure_of([] { mproc::exec_file("pwd", {}, {.cwd = "/nonexistent-mproc-cwd"}); });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    CHECK(f.spawn_error);
    CHECK(f.code == ENOENT);
    CHECK(contains(f.what, "pwd"));
    CHECK(t::raw_children().empty());
  }
  SECTION("cwd is a file") {
    auto f = failure_of([] { spawn_and_end("pwd", {}, {.cwd = "/etc/passwd"}); });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    CHECK(f.spawn_error);
    CHECK(f.code == ENOTDIR);
    CHECK(contains(f.what, "pwd"));
    CHECK(t::raw_children().empty());
  }
}

// ---------------------------------------------------------------------------------------------------
// Programs that cannot be started
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: a missing program throws SpawnError ENOENT naming it and leaves no child", "[spawn]") {
  const std::string name = GENERATE(std::string("mproc-no-such-program-xyz"), std::string("/nonexistent/prog"));
  const std::size_t owned_before = mproc::Reaper::instance().owned();
  SECTION("spawn") {
    auto f = failure_of([&] { spawn_and_end(name, {"arg"}); });
    INFO(name << ": " << f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == ENOENT);
    CHECK(f.code_is_system);
    CHECK(contains(f.what, name));
    CHECK(t::raw_children().empty());
  }
  SECTION("exec_file") {
    auto f = failure_of([&] { mproc::exec_file(name, {}); });
    INFO(name << ": " << f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == ENOENT);
    CHECK(contains(f.what, name));
    CHECK(t::raw_children().empty());
  }
  SECTION("spawn with every stream ignored and ipc") {
    auto f = failure_of(
        [&] { spawn_and_end(name, {}, {.in = Stdio::ignore, .out = Stdio::ignore, .err = Stdio::ignore, .ipc = true}); });
    INFO(name << ": " << f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == ENOENT);
    CHECK(t::raw_children().empty());
  }
  // The library's own registry holds nothing for the failed start either.
  CHECK(mproc::Reaper::instance().owned() == owned_before);
}

TEST_CASE("spawn: a file that is not executable throws SpawnError EACCES", "[spawn]") {
  TempDir dir("eacces");
  const fs::path script = dir.file("not-executable", "#!/bin/sh\necho should-not-run\n", k0644);
  SECTION("spawn by path") {
    auto f = failure_of([&] { spawn_and_end(script.string(), {}); });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == EACCES);
    CHECK(contains(f.what, script.string()));
    CHECK(t::raw_children().empty());
  }
  SECTION("exec_file by path") {
    auto f = failure_of([&] { mproc::exec_file(script.string(), {}); });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == EACCES);
    CHECK(t::raw_children().empty());
  }
  SECTION("found in PATH but nothing executable there") {
    auto f = failure_of([&] {
      mproc::exec_file("not-executable", {}, {.env = Env{{"PATH", dir.path().string()}}});
    });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == EACCES);
    CHECK(contains(f.what, "not-executable"));
    CHECK(t::raw_children().empty());
  }
  SECTION("a directory") {
    auto f = failure_of([&] { spawn_and_end(dir.path().string(), {}); });
    INFO(f.other << " " << f.what << "; children: " << describe_children());
    REQUIRE(f.spawn_error);
    CHECK(f.code == EACCES);
    CHECK(t::raw_children().empty());
  }
}

TEST_CASE("spawn: PATH lookup uses the PATH of options.env and skips files that are not executable", "[spawn]") {
  TempDir dir("path");
  dir.file("a/mproc-path-probe", "#!/bin/sh\necho from-a\n", k0644);  // found first, not executable
  dir.file("b/mproc-path-probe", "#!/bin/sh\necho from-b\n", k0755);
  const std::string a = (dir.path() / "a").string(), b = (dir.path() / "b").string();

  auto r = mproc::exec_file("mproc-path-probe", {}, {.env = Env{{"PATH", a + ":" + b}}});
  CHECK(r.out == "from-b\n");
  CHECK(r.status.exitcode() == 0);

  // Through spawn as well.
  {
    ChildProcess c = mproc::spawn("mproc-path-probe", {}, {.env = Env{{"PATH", b}}});
    ChildGuard guard(c);
    CHECK(c.read_all_stdout() == "from-b\n");
    CHECK(c.wait().exitcode() == 0);
  }

  // Without env, our PATH is searched, where the probe is not.
  auto f = failure_of([] { mproc::exec_file("mproc-path-probe", {}); });
  INFO(f.other << " " << f.what);
  CHECK(f.spawn_error);
  CHECK(f.code == ENOENT);

  // A relative file containing '/' is resolved from cwd, not from PATH.
  r = mproc::exec_file("./mproc-path-probe", {}, {.cwd = b});
  CHECK(r.out == "from-b\n");
  CHECK(t::raw_children().empty());
}

// ---------------------------------------------------------------------------------------------------
// ChildProcess: streams
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: cat echoes lines written with write one by one until close_stdin", "[spawn]") {
  ChildProcess c = mproc::spawn("cat", {});
  ChildGuard guard(c);
  REQUIRE(c.pid() > 0);
  c.write("a\n");
  CHECK(line_or(c.read_line_stdout()) == "a");
  c.write("b\n");
  CHECK(line_or(c.read_line_stdout()) == "b");
  c.write("c1\n\nc3\n");
  CHECK(line_or(c.read_line_stdout()) == "c1");
  CHECK(line_or(c.read_line_stdout()) == "");
  CHECK(line_or(c.read_line_stdout()) == "c3");
  c.close_stdin();
  c.close_stdin();  // a second call does nothing
  CHECK_FALSE(c.read_line_stdout());
  CHECK_FALSE(c.read_line_stdout());
  const ExitStatus st = c.wait();
  CHECK(st.exited());
  CHECK(st.exitcode() == 0);
  CHECK(c.read_all_stderr().empty());
}

TEST_CASE("spawn: read_line returns a last line without newline and read_all returns the rest", "[spawn]") {
  SECTION("both streams line by line") {
    ChildProcess c = mproc::spawn("/bin/sh", {"-c", "printf 'one\\ntwo\\nlast'; printf 'e1\\ne2' 1>&2"});
    ChildGuard guard(c);
    CHECK(line_or(c.read_line_stdout()) == "one");
    CHECK(line_or(c.read_line_stdout()) == "two");
    CHECK(line_or(c.read_line_stdout()) == "last");
    CHECK_FALSE(c.read_line_stdout());
    CHECK(line_or(c.read_line_stderr()) == "e1");
    CHECK(line_or(c.read_line_stderr()) == "e2");
    CHECK_FALSE(c.read_line_stderr());
    CHECK(c.wait().exitcode() == 0);
  }
  SECTION("a line, then the rest") {
    ChildProcess c = mproc::spawn("cat", {});
    ChildGuard guard(c);
    c.write("1\n2\n3\n");
    CHECK(line_or(c.read_line_stdout()) == "1");
    c.close_stdin();
    CHECK(c.read_all_stdout() == "2\n3\n");
    CHECK(c.read_all_stdout() == "");  // "" once at EOF
    CHECK_FALSE(c.read_line_stdout());
    CHECK(c.wait().exitcode() == 0);
  }
}

TEST_CASE("spawn: 10 MB on stdout and 10 MB on stderr at once are read whole in either order", "[spawn]") {
  const bool stderr_first = GENERATE(false, true);
  const auto t0 = t::Clock::now();
  ChildProcess c = mproc::spawn(
      "/bin/sh", {"-c", "head -c 10000000 /dev/zero & head -c 10000000 /dev/zero 1>&2; wait"});
  ChildGuard guard(c);
  std::string out, err;
  if (stderr_first) {
    err = c.read_all_stderr();
    out = c.read_all_stdout();
  } else {
    out = c.read_all_stdout();
    err = c.read_all_stderr();
  }
  const ExitStatus st = c.wait();
  WARN((stderr_first ? "stderr first" : "stdout first") << ": " << t::ms_since(t0) << " ms");
  CHECK(out.size() == 10'000'000);
  CHECK(err.size() == 10'000'000);
  CHECK(all_zero(out));
  CHECK(all_zero(err));
  CHECK(st.exitcode() == 0);
}

TEST_CASE("spawn: wait on a child writing 1 MB unread does not deadlock and the output is kept", "[spawn]") {
  const bool with_timeout = GENERATE(false, true);
  ChildProcess c = mproc::spawn("/bin/sh", {"-c", "head -c 1000000 /dev/zero; echo tail; echo err-tail 1>&2"});
  ChildGuard guard(c);
  ExitStatus st;
  if (with_timeout) {
    auto w = c.wait(30s);
    REQUIRE(w);
    st = *w;
  } else {
    st = c.wait();
  }
  CHECK(st.exitcode() == 0);
  const std::string out = c.read_all_stdout();
  CHECK(out.size() == 1'000'005);
  CHECK(all_zero(out.substr(0, 1'000'000)));
  CHECK(out.substr(1'000'000) == "tail\n");
  CHECK(c.read_all_stderr() == "err-tail\n");
}

TEST_CASE("spawn: write of 1 MB to cat while cat writes it back does not deadlock", "[spawn]") {
  const std::string big = pattern(1 << 20, 7);
  ChildProcess c = mproc::spawn("cat", {});
  ChildGuard guard(c);
  c.write(big);  // cat answers as it reads: write() must keep stdout moving
  c.close_stdin();
  const std::string out = c.read_all_stdout();
  CHECK(out.size() == big.size());
  CHECK((out == big));
  CHECK(c.wait().exitcode() == 0);
}

// ---------------------------------------------------------------------------------------------------
// ChildProcess: wait, running, kill
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: wait with a timeout and running and kill and the recorded status", "[spawn]") {
  const int sig = GENERATE(SIGTERM, SIGKILL);
  ChildProcess c = mproc::spawn("sleep", {"10"});
  ChildGuard guard(c);
  const pid_t pid = c.pid();

  auto t0 = t::Clock::now();
  auto w = c.wait(200ms);
  double took = t::ms_since(t0);
  INFO("wait(200ms) took " << took << " ms");
  CHECK_FALSE(w);
  CHECK(took >= 150);
  CHECK(took < 5000);

  t0 = t::Clock::now();
  CHECK_FALSE(c.wait(0ms));  // just looks
  CHECK_FALSE(c.wait(-5ms));
  CHECK(t::ms_since(t0) < 1000);
  CHECK(c.running());

  if (sig == SIGTERM)
    c.kill();  // SIGTERM is the default
  else
    c.kill(sig);
  const ExitStatus st = c.wait();
  INFO("status " << st.to_string());
  CHECK(st.signaled());
  CHECK(st.signal() == sig);
  CHECK(st.exitcode() == -sig);

  CHECK(c.wait() == st);  // again: the recorded status
  auto again = c.wait(10ms);
  REQUIRE(again);
  CHECK(*again == st);
  CHECK_NOTHROW(c.kill());
  CHECK_NOTHROW(c.kill(SIGKILL));
  CHECK_FALSE(c.running());
  CHECK(c.pid() == pid);
  CHECK(mproc::Reaper::instance().status(pid) == std::optional<ExitStatus>(st));
}

TEST_CASE("spawn: running turns false by itself once the program ended and wait then returns its status",
          "[spawn]") {
  ChildProcess c = mproc::spawn("/bin/sh", {"-c", "exit 4"});
  ChildGuard guard(c);
  // No fd tells when running() changes: poll it with a generous bound.
  CHECK(t::wait_until([&] { return !c.running(); }, 10s, 5ms));
  CHECK(t::raw_children().empty());  // running() reaped it
  CHECK(c.wait().exitcode() == 4);
}

// ---------------------------------------------------------------------------------------------------
// IPC
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: ipc channel carries 2000 messages in order and parent_channel works in the child", "[spawn]") {
  SpawnOptions o;
  o.ipc = true;
  SECTION("our environment") {}
  SECTION("a custom env (MPROC_IPC_FD is added to it)") {
    o.env = Env{{"SOME", "thing"}};
  }
  ChildProcess c = mproc::spawn(MPROC_TEST_HELPER, {"ipc-echo"}, o);
  ChildGuard guard(c);
  mproc::Connection& ch = c.channel();

  // One thread sends the 1,000 ints while this one receives: small messages fill a unix socket's
  // buffer after a few hundred (each is charged at its skb size), so sending all before receiving
  // would deadlock with a child that answers as it reads. One sender and one receiver on the same
  // duplex end is allowed (connection.hpp).
  std::string send_problem;
  std::thread sender([&] {
    try {
      for (int i = 0; i < 1000; ++i) ch.send(i * 7);
    } catch (const std::exception& e) {
      send_problem = e.what();
    }
  });
  std::string problem;
  int answers = 0, own = 0;
  try {
    for (int i = 0; i < 1000 && problem.empty(); ++i) {
      if (!ch.poll(20s)) {
        problem = "no answer " + std::to_string(i) + " within 20 s";
        break;
      }
      const int x = ch.recv<int>();
      if (x != i * 7 + 1)
        problem = "answer " + std::to_string(i) + " is " + std::to_string(x);
      else
        ++answers;
      if (!ch.poll(20s)) {
        problem = "no own message " + std::to_string(i) + " within 20 s";
        break;
      }
      const std::string m = ch.recv<std::string>();
      if (m != "child-" + std::to_string(i))
        problem = "own message " + std::to_string(i) + " is '" + m + "'";
      else
        ++own;
    }
  } catch (const std::exception& e) {
    problem = std::string("exception: ") + e.what();
  }
  if (!problem.empty()) c.kill(SIGKILL);  // unblocks the sender (EPIPE) if the child stopped reading
  sender.join();
  const auto st = c.wait(20s);
  REQUIRE(st);
  const std::string err = c.read_all_stderr();
  INFO(problem << "; sender: " << send_problem << "; helper " << st->to_string()
                << " (10.. = failed check in ipc_echo_mode); stderr: " << err);
  CHECK(problem.empty());
  CHECK(send_problem.empty());
  CHECK(answers == 1000);
  CHECK(own == 1000);
  CHECK(st->exitcode() == 0);
}

TEST_CASE("spawn: channel without ipc throws UsageError and parent_channel is nullopt without ipc", "[spawn]") {
  // This test process was not started with ipc.
  REQUIRE(std::getenv("MPROC_IPC_FD") == nullptr);
  CHECK_FALSE(mproc::parent_channel());
  CHECK_FALSE(mproc::parent_channel());

  ChildProcess c = mproc::spawn(MPROC_TEST_HELPER, {"ipc-none"});
  ChildGuard guard(c);
  CHECK_THROWS_AS(c.channel(), UsageError);
  const ExitStatus st = c.wait();
  INFO("helper " << st.to_string() << "; stderr: " << c.read_all_stderr());
  CHECK(st.exitcode() == 0);  // parent_channel() was nullopt in the helper too
}

// ---------------------------------------------------------------------------------------------------
// What the child inherits
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: the child sees only fds 0 1 2 and 3 with ipc whatever the parent opened", "[spawn]") {
  const bool ipc = GENERATE(false, true);
  REQUIRE(::fcntl(57, F_GETFD) < 0);  // 57 is free
  const int raw = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  REQUIRE(raw >= 0);
  t::Fd raw_owner(raw);
  REQUIRE(::dup2(raw, 57) == 57);  // dup2: not CLOEXEC either
  t::Fd fd57(57);
  int p[2];
  REQUIRE(::pipe(p) == 0);  // a pipe without CLOEXEC
  t::Fd pr(p[0]), pw(p[1]);

  ChildProcess c = mproc::spawn(MPROC_TEST_HELPER, {"list-fds"}, {.ipc = ipc});
  ChildGuard guard(c);
  const std::string out = c.read_all_stdout();
  const ExitStatus st = c.wait();
  const std::set<int> fds = parse_fds(out);
  const std::set<int> expected = ipc ? std::set<int>{0, 1, 2, 3} : std::set<int>{0, 1, 2};
  INFO("ipc=" << ipc << ": child fds " << show(fds) << " (our extra fds " << raw << ", 57, " << p[0] << ", " << p[1]
              << "); helper " << st.to_string() << "; stderr: " << c.read_all_stderr());
  CHECK(st.exitcode() == 0);
  CHECK(fds == expected);
  CHECK(fds.count(57) == 0);
}

TEST_CASE("spawn: the child starts with an empty signal mask and SIGPIPE and SIGXFSZ no longer ignored",
          "[spawn]") {
  // For the duration of the spawn: SIGUSR1 blocked in this thread; SIGPIPE, SIGXFSZ and SIGHUP ignored.
  // exec keeps a blocked mask and ignored dispositions. Header: the mask is empty, SIGPIPE and SIGXFSZ
  // are reset to SIG_DFL (Python's restore_signals), other ignored signals stay ignored (nohup works).
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &block, &old_mask) == 0);
  struct sigaction ign {}, old_hup {}, old_pipe {}, old_xfsz {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  REQUIRE(::sigaction(SIGHUP, &ign, &old_hup) == 0);
  REQUIRE(::sigaction(SIGPIPE, &ign, &old_pipe) == 0);
  REQUIRE(::sigaction(SIGXFSZ, &ign, &old_xfsz) == 0);
  std::optional<mproc::ExecResult> r;
  std::string ours;  // our own /proc/self/status while the dispositions are changed
  {
    t::ScopeExit restore([&] {
      ::sigaction(SIGHUP, &old_hup, nullptr);
      ::sigaction(SIGPIPE, &old_pipe, nullptr);
      ::sigaction(SIGXFSZ, &old_xfsz, nullptr);
      ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    });
    std::ifstream self_status("/proc/self/status");
    std::stringstream ss;
    ss << self_status.rdbuf();
    ours = ss.str();
    r = mproc::exec_file("grep", {"^Sig", "/proc/self/status"});
  }
  REQUIRE(r);
  INFO("child's /proc/self/status:\n" << r->out << "ours: SigIgn " << status_field(ours, "SigIgn"));
  CHECK(r->status.exitcode() == 0);
  const std::string blocked = status_field(r->out, "SigBlk"), ignored = status_field(r->out, "SigIgn");
  REQUIRE(ignored.size() == 16);
  const std::uint64_t ign_mask = std::stoull(ignored, nullptr, 16);
  auto bit = [](int sig) { return 1ull << (sig - 1); };
  CHECK(blocked == "0000000000000000");
  CHECK((ign_mask & bit(SIGPIPE)) == 0);  // back to SIG_DFL
  CHECK((ign_mask & bit(SIGXFSZ)) == 0);  // back to SIG_DFL
  CHECK((ign_mask & bit(SIGHUP)) != 0);   // still ignored, as exec keeps it
  // Whatever else we ignore (a shell's background job ignores SIGINT and SIGQUIT) stays ignored too.
  const std::string our_ignored = status_field(ours, "SigIgn");
  REQUIRE(our_ignored.size() == 16);
  const std::uint64_t our_mask = std::stoull(our_ignored, nullptr, 16);
  CHECK(ign_mask == (our_mask & ~(bit(SIGPIPE) | bit(SIGXFSZ))));
}

TEST_CASE("spawn: Stdio ignore is dev null and inherit is our own stream", "[spawn]") {
  SECTION("ignore") {
    ChildProcess e = mproc::spawn("echo", {"x"}, {.out = Stdio::ignore});
    ChildGuard g1(e);
    CHECK(e.wait().exitcode() == 0);

    // The shell's own fds, read in a command substitution (a redirection on readlink would first be
    // applied to the shell itself by dash), then printed on stderr.
    ChildProcess c = mproc::spawn("/bin/sh", {"-c", "a=$(readlink /proc/$$/fd/0 /proc/$$/fd/1); echo \"$a\" 1>&2"},
                                  {.in = Stdio::ignore, .out = Stdio::ignore});
    ChildGuard g2(c);
    CHECK(c.read_all_stderr() == "/dev/null\n/dev/null\n");
    CHECK(c.wait().exitcode() == 0);
  }
  SECTION("inherit") {
    char buf[512];
    const ssize_t k = ::readlink("/proc/self/fd/2", buf, sizeof buf - 1);
    REQUIRE(k > 0);
    const std::string ours(buf, static_cast<std::size_t>(k));
    ChildProcess c = mproc::spawn("/bin/sh", {"-c", "readlink /proc/$$/fd/2; exit 0"}, {.err = Stdio::inherit});
    ChildGuard guard(c);
    CHECK(c.read_all_stdout() == ours + "\n");
    CHECK(c.wait().exitcode() == 0);
  }
}

// ---------------------------------------------------------------------------------------------------
// Reaping beside other code; destroyed ChildProcess objects
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: std system and a raw fork child keep their exit status beside spawned children", "[spawn]") {
  const bool background = GENERATE(false, true);
  auto& reaper = mproc::Reaper::instance();
  if (background) reaper.set_mode(mproc::ReapMode::background);
  t::ScopeExit restore([&] { reaper.set_mode(mproc::ReapMode::on_demand); });

  ChildProcess sleeper = mproc::spawn("sleep", {"10"});
  ChildGuard g1(sleeper);
  ChildProcess quick = mproc::spawn("true", {});
  ChildGuard g2(quick);

  const int rc = std::system("exit 3");
  INFO("background=" << background << ": std::system returned " << rc);
  CHECK(rc != -1);
  CHECK(WIFEXITED(rc));
  CHECK(WEXITSTATUS(rc) == 3);

  auto raw = t::RawChild::fork([] { return 5; });
  // Let the library look at its children while the raw child is certainly a zombie: it must not take it.
  CHECK(t::wait_until([&] { auto s = t::proc_stat(raw.pid()); return s && s->state == 'Z'; }, 10s));
  reaper.reap();
  CHECK(sleeper.running());
  CHECK(quick.wait().exitcode() == 0);
  reaper.reap();
  auto st = raw.wait_for(10s);  // the test's own waitpid(pid)
  REQUIRE(st);
  INFO("raw child " << t::describe_status(*st));
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 5);

  sleeper.kill();
  CHECK(sleeper.wait().signal() == SIGTERM);
}

TEST_CASE("spawn: destroying a running ChildProcess does not block and hands it to the reaper", "[spawn]") {
  pid_t pid = -1;
  const auto t0 = t::Clock::now();
  {
    ChildProcess c = mproc::spawn("sleep", {"10"});
    pid = c.pid();
  }
  const double took = t::ms_since(t0);
  t::ScopeExit cleanup([&] { t::kill_owned(pid); });
  INFO("the scope took " << took << " ms");
  CHECK(took < 5000);
  REQUIRE(pid > 0);
  CHECK_FALSE(t::is_ended(pid));  // still running
  CHECK(::kill(pid, 0) == 0);
  mproc::Reaper::instance().reap();
  CHECK_FALSE(t::is_ended(pid));

  REQUIRE(::kill(pid, SIGKILL) == 0);
  const bool gone = t::wait_until(
      [&] {
        mproc::Reaper::instance().reap();
        return t::is_gone(pid);
      },
      10s, 10ms);
  CHECK(gone);
  const auto st = mproc::Reaper::instance().status(pid);
  REQUIRE(st);
  CHECK(st->signal() == SIGKILL);
}

TEST_CASE("spawn: a destroyed ChildProcess closes its pipes so cat sees EOF and yes gets SIGPIPE", "[spawn]") {
  const std::string prog = GENERATE(std::string("cat"), std::string("yes"));
  pid_t pid = -1;
  {
    ChildProcess c = mproc::spawn(prog, {});
    pid = c.pid();
  }
  t::ScopeExit cleanup([&] { t::kill_owned(pid); });
  REQUIRE(pid > 0);
  const bool gone = t::wait_until(
      [&] {
        mproc::Reaper::instance().reap();
        return t::is_gone(pid);
      },
      10s, 10ms);
  CHECK(gone);
  const auto st = mproc::Reaper::instance().status(pid);
  REQUIRE(st);
  INFO(prog << ": " << st->to_string());
  if (prog == "cat")
    CHECK(st->exitcode() == 0);  // EOF on stdin
  else
    CHECK(st->signal() == SIGPIPE);  // its stdout was closed
}

// ---------------------------------------------------------------------------------------------------
// Sessions, detached children, this process's exit
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: detached runs in its own session and a normal child in our process group", "[spawn]") {
  ChildProcess a = mproc::spawn("sleep", {"10"});
  ChildGuard ga(a);
  ChildProcess d = mproc::spawn("sleep", {"10"}, {.detached = true});
  ChildGuard gd(d);
  CHECK(::getpgid(a.pid()) == ::getpgrp());
  CHECK(::getsid(a.pid()) == ::getsid(0));
  CHECK(::getsid(d.pid()) == d.pid());
  CHECK(::getpgid(d.pid()) == d.pid());
  a.kill();
  d.kill();
  CHECK(a.wait().signal() == SIGTERM);
  CHECK(d.wait().signal() == SIGTERM);  // still ours to reap while we run
}

TEST_CASE("spawn: a detached child outlives its parent's normal exit in its own session", "[spawn]") {
  const std::string how = GENERATE(std::string("keep"), std::string("destroyed"));
  auto h = t::launch_helper({"spawn-detached", how});
  const pid_t helper = h.proc.pid();
  t::LineReader out(h.out.get());
  const pid_t pid = read_pid_line(out, "child");
  t::ScopeExit cleanup([&] { kill_if_leftover(pid, "sleep"); });
  REQUIRE(pid > 0);
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  // The helper's exit has completed; its detached program must still be running.
  const bool alive = !t::is_ended(pid) && ::kill(pid, 0) == 0;
  const auto ps = t::proc_stat(pid);
  const pid_t sid = ::getsid(pid);
  const std::string err = t::read_to_eof(h.err.get(), 1s);
  INFO(how << ": helper " << t::describe_status(*st) << "; program " << pid << " state "
           << (ps ? std::string(1, ps->state) : std::string("gone")) << " sid " << sid << "; stderr: " << err);
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  CHECK(alive);
  CHECK(t::read_comm(pid) == "sleep");
  CHECK(sid == pid);
  CHECK(sid != ::getsid(0));  // the helper was in our session
  if (ps) CHECK(ps->ppid != helper);
  ::kill(pid, SIGKILL);
  CHECK(t::wait_until([&] { return t::is_ended(pid); }, 5000ms, 10ms));
}

TEST_CASE("spawn: a non-detached child does not outlive its parent's normal exit", "[spawn]") {
  const std::string how = GENERATE(std::string("keep"), std::string("destroyed"));
  auto h = t::launch_helper({"spawn-attached", how});
  t::LineReader out(h.out.get());
  const pid_t pid = read_pid_line(out, "child");
  t::ScopeExit cleanup([&] { kill_if_leftover(pid, "sleep"); });
  REQUIRE(pid > 0);
  auto st = h.proc.wait_for(20s);
  REQUIRE(st);
  const bool ended_at_once = t::is_ended(pid);
  const bool ended = t::wait_until([&] { return t::is_ended(pid); }, 5000ms, 10ms);
  const std::string err = t::read_to_eof(h.err.get(), 1s);
  INFO(how << ": helper " << t::describe_status(*st) << "; stderr: " << err);
  if (ended && !ended_at_once) WARN(how << ": the program ended only after its parent's exit had completed");
  CHECK((WIFEXITED(*st) && WEXITSTATUS(*st) == 0));
  CHECK(ended);
}

// ---------------------------------------------------------------------------------------------------
// Misuse and errors
// ---------------------------------------------------------------------------------------------------

namespace {
void check_every_call_throws_usage_error(ChildProcess& c) {
  CHECK_THROWS_AS(c.pid(), UsageError);
  CHECK_THROWS_AS(c.write("x"), UsageError);
  CHECK_THROWS_AS(c.close_stdin(), UsageError);
  CHECK_THROWS_AS(c.read_line_stdout(), UsageError);
  CHECK_THROWS_AS(c.read_line_stderr(), UsageError);
  CHECK_THROWS_AS(c.read_all_stdout(), UsageError);
  CHECK_THROWS_AS(c.read_all_stderr(), UsageError);
  CHECK_THROWS_AS(c.wait(), UsageError);
  CHECK_THROWS_AS(c.wait(1ms), UsageError);
  CHECK_THROWS_AS(c.running(), UsageError);
  CHECK_THROWS_AS(c.kill(), UsageError);
  CHECK_THROWS_AS(c.channel(), UsageError);
}
}  // namespace

TEST_CASE("spawn: misuse throws UsageError", "[spawn]") {
  SECTION("a default-constructed ChildProcess") {
    ChildProcess c;
    check_every_call_throws_usage_error(c);
  }
  SECTION("a moved-from ChildProcess") {
    ChildProcess a = mproc::spawn("cat", {});
    ChildGuard ga(a);
    const pid_t pid = a.pid();
    ChildProcess b = std::move(a);
    ChildGuard gb(b);
    check_every_call_throws_usage_error(a);
    ChildProcess c;
    c = std::move(b);  // move assignment
    ChildGuard gc(c);
    CHECK_THROWS_AS(b.pid(), UsageError);
    CHECK(c.pid() == pid);
    c.write("still\n");
    CHECK(line_or(c.read_line_stdout()) == "still");
    c.close_stdin();
    CHECK(c.wait().exitcode() == 0);
  }
  SECTION("a stream that is not a pipe") {
    const Stdio s = GENERATE(Stdio::inherit, Stdio::ignore);
    ChildProcess c = mproc::spawn("true", {}, {.in = s, .out = s, .err = s});
    ChildGuard guard(c);
    CHECK_THROWS_AS(c.read_line_stdout(), UsageError);
    CHECK_THROWS_AS(c.read_all_stdout(), UsageError);
    CHECK_THROWS_AS(c.read_line_stderr(), UsageError);
    CHECK_THROWS_AS(c.read_all_stderr(), UsageError);
    CHECK_THROWS_AS(c.write("x"), UsageError);
    CHECK_THROWS_AS(c.close_stdin(), UsageError);
    CHECK(c.wait().exitcode() == 0);
  }
  SECTION("write after close_stdin") {
    ChildProcess c = mproc::spawn("cat", {});
    ChildGuard guard(c);
    c.close_stdin();
    CHECK_THROWS_AS(c.write("x"), UsageError);
    CHECK(c.wait().exitcode() == 0);
  }
  SECTION("an empty file or a bad env key") {
    CHECK_THROWS_AS(spawn_and_end("", {}), UsageError);
    CHECK_THROWS_AS((spawn_and_end("true", {}, {.env = Env{{"", "v"}}})), UsageError);
    CHECK_THROWS_AS((spawn_and_end("true", {}, {.env = Env{{"A=B", "v"}}})), UsageError);
    CHECK(t::raw_children().empty());
  }
  SECTION("a bad signal number") {
    ChildProcess c = mproc::spawn("sleep", {"10"});
    ChildGuard guard(c);
    int code = 0;
    try {
      c.kill(12345);
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    CHECK(code == EINVAL);
    CHECK(c.running());
    c.kill(SIGKILL);
    CHECK(c.wait().signal() == SIGKILL);
  }
}

TEST_CASE("spawn: write to a child that ended throws system_error EPIPE without SIGPIPE", "[spawn]") {
  // SIGPIPE at its default disposition here, so a raised SIGPIPE would kill this test process.
  struct sigaction dfl {}, old {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  REQUIRE(::sigaction(SIGPIPE, &dfl, &old) == 0);
  t::ScopeExit restore([&] { ::sigaction(SIGPIPE, &old, nullptr); });

  const bool waited = GENERATE(true, false);
  ChildProcess c = mproc::spawn("true", {});
  ChildGuard guard(c);
  if (waited) CHECK(c.wait().exitcode() == 0);
  // Not waited: 4 MiB cannot fit the pipe (not even one grown to the usual 1 MiB pipe-max-size), so write() blocks until `true` ends and its stdin closes.
  const std::string data = waited ? std::string("x") : std::string(4 << 20, 'x');
  int code = 0;
  std::string other;
  try {
    c.write(data);
  } catch (const std::system_error& e) {
    code = e.code().value();
  } catch (const std::exception& e) {
    other = e.what();
  }
  INFO("waited=" << waited << " other exception: " << other);
  CHECK(code == EPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  REQUIRE(::sigpending(&pending) == 0);
  CHECK_FALSE(sigismember(&pending, SIGPIPE));  // consumed, not left pending
  CHECK(c.wait().exitcode() == 0);
}

// ---------------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------------

TEST_CASE("spawn: exec_file and spawn from four threads at once", "[spawn]") {
  constexpr int kThreads = 4, kRuns = MPROC_TEST_ASAN ? 5 : 10;
  std::atomic<int> ok{0};
  std::mutex m;
  std::vector<std::string> problems;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      for (int j = 0; j < kRuns; ++j) {
        const std::string word = "t" + std::to_string(i) + "-" + std::to_string(j);
        try {
          auto r = mproc::exec_file("echo", {word});
          ChildProcess c = mproc::spawn("cat", {});
          ChildGuard guard(c);
          c.write(word + "\n");
          auto line = c.read_line_stdout();
          c.close_stdin();
          const int code = c.wait().exitcode();
          if (r.out == word + "\n" && r.status.exitcode() == 0 && line && *line == word && code == 0) {
            ++ok;
          } else {
            std::lock_guard<std::mutex> lock(m);
            problems.push_back(word + ": exec_file out '" + r.out + "', cat line '" + line_or(line) + "'");
          }
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(m);
          problems.push_back(word + ": " + e.what());
        }
      }
    });
  for (auto& th : threads) th.join();
  std::string all;
  for (auto& p : problems) all += "\n  " + p;
  INFO("problems:" << all);
  CHECK(ok == kThreads * kRuns);
  CHECK(t::raw_children().empty());
}
