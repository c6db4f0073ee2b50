// tests/fault/fault_sweep.cpp — the fault-injection sweep for one (operation, call) pair: runs
// fault_driver with the shim preloaded, first as a dry run to learn how many calls K of that kind the
// operation makes, then once per N = 1..K+1 and per errno with MPROC_FAULT=<call>:<N>:<errno>, each in
// its own process group with a timeout. A run fails if the driver reports a failed check (exit 1), is
// killed by a signal (a crash), outlives the timeout (a hang), or leaves a process of its group behind.
// Plain POSIX, no mproc: the runner must not depend on the code under test.
//
//   fault_sweep --driver <path> --shim <path> --mode <op> --call <kind> --errnos E1,E2,...
//               [--timeout-s 30] [--max-n 0] [--env NAME=VALUE]...
//
// --max-n caps the number of N values per errno (0: all): N = 1..max-n/2, then evenly spaced up to K+1
// (for kinds an operation calls hundreds of times). Exit 0 if every run passed, 77 (ctest's skip code)
// if the operation makes no call of that kind, 1 otherwise. Prints one summary line and the distinct
// errors the operation reported.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string driver, shim, mode, call;
  std::vector<std::string> errnos;
  int timeout_s = 30;
  long max_n = 0;
  std::vector<std::string> env;
};

struct Run {
  enum Kind { exited, signaled, timed_out, leftover } kind = exited;
  int code = 0;  // exit code or signal
  std::string output;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fault_sweep: %s\n", what.c_str());
  std::exit(2);
}

// Whether any process of group pgid is left (zombies of ours excluded: we reaped the leader).
bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0; }

Run run_driver(const Options& o, const std::string& fault) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) die("pipe2: " + std::string(std::strerror(errno)));
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "LD_PRELOAD=", 11) == 0 || std::strncmp(*e, "MPROC_FAULT=", 12) == 0) continue;
    env_strings.emplace_back(*e);
  }
  env_strings.push_back("LD_PRELOAD=" + o.shim);
  if (!fault.empty()) env_strings.push_back("MPROC_FAULT=" + fault);
  for (auto& e : o.env) env_strings.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string driver = o.driver, mode = o.mode;
  char* argv[] = {driver.data(), mode.data(), nullptr};

  const pid_t pid = ::fork();
  if (pid < 0) die("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::setpgid(0, 0);  // its own group: a timeout kills everything it started
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execve(argv[0], argv, envp.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before we might signal it
  ::close(out[1]);
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));

  Run r;
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  bool out_open = true, ended = false;
  int status = 0;
  while (!ended) {
    pollfd p[2] = {{out[0], static_cast<short>(out_open ? POLLIN : 0), 0}, {pidfd, POLLIN, 0}};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.kind = Run::timed_out;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    // Without a pidfd (old kernel) look for the end every 10 ms.
    const int n = ::poll(p, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? static_cast<int>(left) : 10);
    if (n < 0 && errno != EINTR) die("poll: " + std::string(std::strerror(errno)));
    if (out_open && (p[0].revents & (POLLIN | POLLHUP))) {
      char buf[4096];
      const ssize_t k = ::read(out[0], buf, sizeof buf);
      if (k > 0)
        r.output.append(buf, static_cast<std::size_t>(k));
      else if (k == 0)
        out_open = false;
    }
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) ended = true;
  }
  // Drain what is left of the output.
  for (char buf[4096];;) {
    const ssize_t k = ::read(out[0], buf, sizeof buf);
    if (k <= 0) break;
    r.output.append(buf, static_cast<std::size_t>(k));
  }
  ::close(out[0]);
  if (pidfd >= 0) ::close(pidfd);
  if (r.kind == Run::timed_out) return r;
  if (WIFSIGNALED(status)) {
    r.kind = Run::signaled;
    r.code = WTERMSIG(status);
  } else {
    r.code = WEXITSTATUS(status);
  }
  // Nothing it started may outlive it: daemons die with it (lifeline), the rest it must have reaped.
  const auto grace = Clock::now() + std::chrono::seconds(2);
  while (group_alive(pid) && Clock::now() < grace) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (group_alive(pid)) {
    ::kill(-pid, SIGKILL);
    if (r.kind == Run::exited && r.code == 0) r.kind = Run::leftover;
  }
  return r;
}

std::string line_value(const std::string& output, const std::string& prefix) {
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  return {};
}

long count_of(const std::string& output, const std::string& call) {
  std::istringstream in(line_value(output, "calls "));
  std::string item;
  while (in >> item) {
    auto eq = item.find('=');
    if (eq != std::string::npos && item.substr(0, eq) == call) return std::atol(item.c_str() + eq + 1);
  }
  return -1;
}

std::vector<long> choose_n(long last, long max_n) {
  std::vector<long> ns;
  if (max_n <= 0 || last <= max_n) {
    for (long n = 1; n <= last; ++n) ns.push_back(n);
    return ns;
  }
  const long head = max_n / 2;
  for (long n = 1; n <= head; ++n) ns.push_back(n);
  const long rest = max_n - head;
  for (long i = 1; i <= rest; ++i) {
    long n = head + (last - head) * i / rest;
    if (n > ns.back()) ns.push_back(n);
  }
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--driver") o.driver = value();
    else if (a == "--shim") o.shim = value();
    else if (a == "--mode") o.mode = value();
    else if (a == "--call") o.call = value();
    else if (a == "--timeout-s") o.timeout_s = std::atoi(value().c_str());
    else if (a == "--max-n") o.max_n = std::atol(value().c_str());
    else if (a == "--env") o.env.push_back(value());
    else if (a == "--errnos") {
      std::stringstream ss(value());
      for (std::string e; std::getline(ss, e, ',');) o.errnos.push_back(e);
    } else die("unknown argument " + a);
  }
  if (o.driver.empty() || o.shim.empty() || o.mode.empty() || o.call.empty() || o.errnos.empty())
    die("usage: fault_sweep --driver P --shim P --mode M --call C --errnos E1,E2 [--timeout-s S] [--max-n K] [--env N=V]");
  ::signal(SIGPIPE, SIG_IGN);
  const auto t0 = Clock::now();

  const Run dry = run_driver(o, "");
  if (dry.kind != Run::exited || dry.code != 0) {
    std::printf("fault_sweep: the dry run (no fault) failed:\n%s\n", dry.output.c_str());
    return 1;
  }
  const long k = count_of(dry.output, o.call);
  if (k < 0) {
    std::printf("fault_sweep: the dry run reported no count for '%s':\n%s\n", o.call.c_str(), dry.output.c_str());
    return 1;
  }
  if (k == 0) {
    std::printf("%s x %s: the operation makes no %s call here: skipped\n", o.mode.c_str(), o.call.c_str(), o.call.c_str());
    return 77;
  }

  // K + 1: the last N is past every call (the fault never fires: the operation must just work).
  const auto ns = choose_n(k + 1, o.max_n);
  int runs = 0, ok = 0, errors = 0, failed = 0, not_fired = 0;
  std::map<std::string, int> messages;
  for (const auto& err : o.errnos) {
    for (long n : ns) {
      const std::string fault = o.call + ":" + std::to_string(n) + ":" + err;
      const Run r = run_driver(o, fault);
      ++runs;
      std::string why;
      switch (r.kind) {
        case Run::timed_out: why = "HANG (no end within " + std::to_string(o.timeout_s) + " s)"; break;
        case Run::signaled: why = "CRASH (killed by signal " + std::to_string(r.code) + ")"; break;
        case Run::leftover: why = "a process it started outlived it"; break;
        case Run::exited:
          if (r.code != 0) why = "checks failed (exit " + std::to_string(r.code) + ")";
          break;
      }
      if (!why.empty()) {
        ++failed;
        std::printf("---- FAIL %s %s: %s\n%s\n", o.mode.c_str(), fault.c_str(), why.c_str(), r.output.c_str());
        continue;
      }
      if (line_value(r.output, "fired=") != "1") ++not_fired;
      const std::string outcome = line_value(r.output, "outcome ");
      if (outcome == "ok") {
        ++ok;
      } else {
        ++errors;
        // Distinct messages without the numbers that change from run to run (pids, worker numbers);
        // digits that end a word ("pipe2") stay.
        std::string m = outcome.substr(0, 160);
        for (std::size_t i = 0; i < m.size(); ++i) {
          if (m[i] < '0' || m[i] > '9') continue;
          const bool in_word = i > 0 && (std::isalpha(static_cast<unsigned char>(m[i - 1])) || m[i - 1] == '_');
          if (!in_word)
            for (; i < m.size() && m[i] >= '0' && m[i] <= '9'; ++i) m[i] = '#';
        }
        messages[err + ": " + m]++;
      }
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("%s x %s: dry-run count %ld, N = %ld..%ld (%zu values) x {", o.mode.c_str(), o.call.c_str(), k, ns.front(),
              ns.back(), ns.size());
  for (std::size_t i = 0; i < o.errnos.size(); ++i) std::printf("%s%s", i ? "," : "", o.errnos[i].c_str());
  std::printf("}: %d runs, %d succeeded, %d clear errors, %d failed, %d without the fault firing; %.1f s\n", runs, ok,
              errors, failed, not_fired, secs);
  for (auto& [m, count] : messages) std::printf("  %dx %s\n", count, m.c_str());
  return failed == 0 ? 0 : 1;
}
