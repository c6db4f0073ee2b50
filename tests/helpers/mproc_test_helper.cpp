// tests/helpers/mproc_test_helper.cpp — a small program with modes that the tests exec, for what must
// happen in a fresh process: the parent-exit rules, trace output, first names, exit hooks, and the
// spawned program's side of mproc::spawn (IPC channel, inherited fds, children left at exit).
//
//   daemon-return          start a daemon sleeper ("mproc-sleeper"), print "daemon=<pid>", return from
//                          main with the Process still alive (held by a global pointer, never destroyed)
//   daemon-exit            the same, but std::exit(0) with the Process a local of main
//   daemon-sigkill         start a daemon sleeper, wait until it runs, print "daemon=<pid>", then block
//                          forever (the test SIGKILLs us)
//   nondaemon <marker> <how>  start a non-daemon child that works ~300 ms and then writes "done" to
//                          <marker>; print "child=<pid>" and end at once, <how> being
//                          return (Process alive, held by a global pointer), exit (std::exit(0)) or
//                          destroyed (the Process object is destroyed first, then return)
//   trace [api]            start a child that exits with code 3, print "child=<pid>", join it; with
//                          "api" turn tracing on with mproc::set_trace(true) instead of MPROC_TRACE=1
//   names                  print the default names of the first Processes of a program and of a
//                          child's children
//   on-exit <how>          register on_exit hooks ("hook1 code=N", "hook2 code=N"; a third one is
//                          unsubscribed first), then end: exit5 (std::exit(5)), return4 (return 4
//                          from main), mproc-exit8 (mproc::exit(8))
//   ipc-echo               a program started by mproc::spawn with ipc = true: checks MPROC_IPC_FD=3,
//                          takes mproc::parent_channel() (then MPROC_IPC_FD must be gone from the
//                          environment and fd 3 CLOEXEC), receives 1,000 ints and answers each with
//                          the int + 1 followed by a message of its own ("child-<i>"); exit code 0, or
//                          10.. for the first check that failed (see ipc_echo_mode)
//   ipc-none               exit 0 if mproc::parent_channel() is nullopt (started without ipc), else 10
//   cout-held              std::cout writes through a buffer that keeps its bytes until sync(),
//                          installed by a static initialiser of this program (before main); print
//                          "before;" (unflushed), start a Process that prints "child;" (unflushed),
//                          join, print "after" and flush: stdout must read "before;child;after"
//   list-fds               print this program's open fds, one number a line (the listing's own
//                          directory fd excluded)
//   spawn-detached <how>   mproc::spawn("sleep 30") with detached = true, print "child=<pid>", return
//                          from main; <how>: keep (the ChildProcess held by a global pointer, never
//                          destroyed) or destroyed (the ChildProcess is destroyed first)
//   spawn-attached <how>   the same without detached: that child must not outlive our normal exit
// Output goes to stdout, one "key=value" line per fact, flushed at once.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <mproc/mproc.hpp>

#include "hold_until_sync.hpp"

// Held by pointers that are never deleted: these objects must outlive main() so that the library's
// parent-exit handling (not the Process destructor) is what ends or joins their children. Reachable
// from globals, so LeakSanitizer does not report them; external linkage, so the compiler cannot drop
// the never-read stores.
mproc::Process* g_keep = nullptr;
mproc::this_process::Subscription* g_hooks[2] = {nullptr, nullptr};
mproc::ChildProcess* g_keep_child = nullptr;

namespace {

void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

[[noreturn]] void sleep_forever() {
  for (;;) ::pause();
}

int usage() {
  std::fprintf(stderr, "mproc_test_helper: unknown mode or missing argument\n");
  return 2;
}

mproc::Process make_sleeper(int ready_fd = -1) {
  mproc::Process p([ready_fd] {
    if (ready_fd >= 0) {
      char c = 'r';
      while (::write(ready_fd, &c, 1) < 0 && errno == EINTR) {
      }
    }
    sleep_forever();
  });
  p.name("mproc-sleeper").daemon(true);
  return p;
}

int daemon_mode(const std::string& mode) {
  if (mode == "daemon-return") {
    g_keep = new mproc::Process(make_sleeper());
    g_keep->start();
    say("daemon=" + std::to_string(*g_keep->pid()));
    return 0;
  }
  if (mode == "daemon-exit") {
    mproc::Process p = make_sleeper();
    p.start();
    say("daemon=" + std::to_string(*p.pid()));
    std::exit(0);
  }
  // daemon-sigkill: report the pid only once the daemon runs its target.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return 3;
  mproc::Process p = make_sleeper(fds[1]);
  p.start();
  char c;
  if (::read(fds[0], &c, 1) != 1) return 4;
  say("daemon=" + std::to_string(*p.pid()));
  sleep_forever();
}

int nondaemon_mode(const std::string& marker, const std::string& how) {
  auto work = [marker] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the "work" the parent must wait for
    std::ofstream(marker) << "done\n";
  };
  if (how == "return") {
    g_keep = new mproc::Process(work);
    g_keep->start();
    say("child=" + std::to_string(*g_keep->pid()));
    return 0;
  }
  if (how == "exit") {
    mproc::Process p(work);
    p.start();
    say("child=" + std::to_string(*p.pid()));
    std::exit(0);
  }
  if (how == "destroyed") {
    {
      mproc::Process p(work);
      p.start();
      say("child=" + std::to_string(*p.pid()));
    }  // handed to the reaper, still running
    return 0;
  }
  return usage();
}

int trace_mode(bool api) {
  if (api) mproc::set_trace(true);
  mproc::Process p([] { mproc::exit(3); });
  p.start();
  say("child=" + std::to_string(*p.pid()));
  p.join();
  say("exitcode=" + std::to_string(p.exitcode().value_or(-1000)));
  return 0;
}

int names_mode() {
  say("main=" + mproc::current_process().name);
  mproc::Process a([] {
    mproc::Process c([] { say("c.self=" + mproc::current_process().name); });
    mproc::Process d([] {});
    c.start();
    c.join();
    d.start();
    d.join();
    say("a.child1=" + c.name());
    say("a.child2=" + d.name());
  });
  mproc::Process b([] {});
  a.start();
  a.join();
  b.start();
  b.join();
  say("a=" + a.name());
  say("b=" + b.name());
  return 0;
}

int on_exit_mode(const std::string& how) {
  using mproc::this_process::on_exit;
  using mproc::this_process::Subscription;
  g_hooks[0] = new Subscription(on_exit([](int code) { say("hook1 code=" + std::to_string(code)); }));
  { Subscription gone = on_exit([](int) { say("hook-destroyed ran"); }); }
  Subscription reset = on_exit([](int) { say("hook-reset ran"); });
  reset.reset();
  g_hooks[1] = new Subscription(on_exit([](int code) { say("hook2 code=" + std::to_string(code)); }));
  if (how == "exit5") std::exit(5);
  if (how == "return4") return 4;
  if (how == "mproc-exit8") mproc::exit(8);
  return usage();
}

// Exit codes name the first check that failed: 14 MPROC_IPC_FD is not "3" before the first call, 10
// parent_channel() is nullopt, 11 MPROC_IPC_FD still in the environment after it, 13 fd 3 not CLOEXEC,
// 12 a second parent_channel() is nullopt, 15 a message was not what the parent sends, 16 an exception.
int ipc_echo_mode() {
  try {
    const char* fd_var = std::getenv("MPROC_IPC_FD");
    if (!fd_var || std::string(fd_var) != "3") return 14;
    auto channel = mproc::parent_channel();
    if (!channel) return 10;
    if (std::getenv("MPROC_IPC_FD") != nullptr) return 11;
    const int flags = ::fcntl(3, F_GETFD);
    if (flags < 0 || !(flags & FD_CLOEXEC)) return 13;
    if (!mproc::parent_channel()) return 12;
    for (int i = 0; i < 1000; ++i) {
      const int x = channel->recv<int>();
      if (x != i * 7) return 15;
      channel->send(x + 1);
      channel->send(std::string("child-") + std::to_string(i));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ipc-echo: %s\n", e.what());
    return 16;
  }
}

int list_fds_mode() {
  std::vector<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return 3;
  const int self = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd != self) fds.push_back(fd);
  }
  ::closedir(d);
  std::sort(fds.begin(), fds.end());
  for (int fd : fds) say(std::to_string(fd));
  return 0;
}

int spawn_mode(bool detached, const std::string& how) {
  if (how != "keep" && how != "destroyed") return usage();
  mproc::SpawnOptions options;
  options.detached = detached;
  options.in = options.out = options.err = mproc::Stdio::ignore;
  if (how == "keep") {
    g_keep_child = new mproc::ChildProcess(mproc::spawn("sleep", {"30"}, options));
    say("child=" + std::to_string(g_keep_child->pid()));
    return 0;
  }
  pid_t pid = -1;
  {
    mproc::ChildProcess c = mproc::spawn("sleep", {"30"}, options);
    pid = c.pid();
  }  // handed to the reaper, still running
  say("child=" + std::to_string(pid));
  return 0;
}

// The buffer cout-held installs before main (no put area: its bytes go out only on sync()).
mproc_test::HoldUntilSync g_hold(1);
// A static initialiser of default priority, as a program's own would be: it runs after mproc's (which
// take note of the streams' start-up buffers), whatever the link order.
const bool g_hold_installed = [] {
  const char* v = std::getenv("MPROC_TEST_HOLD_COUT");
  if (v == nullptr || std::strcmp(v, "1") != 0) return false;
  std::cout.rdbuf(&g_hold);
  return true;
}();

int cout_held_mode() {
  if (!g_hold_installed) return 10;
  std::cout << "before;";
  mproc::Process p([] { std::cout << "child;"; });
  p.start();
  p.join();
  std::cout << "after" << std::flush;
  std::cout.rdbuf(nullptr);
  return p.exitcode() == 0 ? 0 : 11;
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  if (mode == "daemon-return" || mode == "daemon-exit" || mode == "daemon-sigkill") return daemon_mode(mode);
  if (mode == "nondaemon") return argc < 4 ? usage() : nondaemon_mode(argv[2], argv[3]);
  if (mode == "trace") return trace_mode(argc > 2 && std::strcmp(argv[2], "api") == 0);
  if (mode == "names") return names_mode();
  if (mode == "on-exit") return argc < 3 ? usage() : on_exit_mode(argv[2]);
  if (mode == "ipc-echo") return ipc_echo_mode();
  if (mode == "ipc-none") return mproc::parent_channel() ? 10 : 0;
  if (mode == "list-fds") return list_fds_mode();
  if (mode == "cout-held") return cout_held_mode();
  if (mode == "spawn-detached") return argc < 3 ? usage() : spawn_mode(true, argv[2]);
  if (mode == "spawn-attached") return argc < 3 ? usage() : spawn_mode(false, argv[2]);
  return usage();
}
