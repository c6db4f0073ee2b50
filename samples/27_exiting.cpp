// 27_exiting — exit() runs atexit handlers and flushes stdio, _exit() does neither (right in a forked
// child); an exit code keeps 8 bits; a signal ends a process unless caught (SIGKILL never is), and the
// parent sees which one: mproc says exitcode -N, a shell 128 + N.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "mproc/mproc.hpp"

namespace posix = mproc::posix;
using namespace std::chrono_literals;

namespace {

pid_t main_pid = 0;

void atexit_handler() {
  std::printf("  atexit handler: running in pid %d%s\n", posix::getpid(),
              posix::getpid() == main_pid ? " (main, at its own normal exit)"
                                          : " (a copy of main's handler, run by the child)");
}

void show_status(const char* what, pid_t pid) {
  std::printf("  %-42s -> %s\n", what, posix::waitpid(pid)->status.to_string().c_str());
}

void no_core_files() {
  rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line-buffered, as on a terminal, also through a pipe
  main_pid = posix::getpid();
  std::atexit(atexit_handler);

  // 1. exit() runs atexit handlers, also the copies a forked child inherited; _exit() runs nothing.
  std::printf("1. main (pid %d) registered an atexit handler, then forks three children\n", main_pid);
  pid_t pid = posix::fork();
  if (pid == 0) {
    std::printf("  child A (pid %d): std::exit(0)\n", posix::getpid());
    std::exit(0);
  }
  posix::waitpid(pid);
  pid = posix::fork();
  if (pid == 0) {
    std::printf("  child B (pid %d): posix::exit_now(0), that is _exit(0): no handler runs\n",
                posix::getpid());
    posix::exit_now(0);
  }
  posix::waitpid(pid);
  mproc::Process c([] {
    std::printf("  child C (pid %d): mproc::exit(0): stdio is flushed, no handler runs\n", posix::getpid());
    mproc::exit(0);
  });
  c.start();
  c.join();

  // 2. Output still in stdio's buffer (here: a line without its newline) is lost by _exit().
  std::printf("2. output still in stdio's buffer\n");
  pid = posix::fork();
  if (pid == 0) {
    std::printf("  child D: this text has no newline yet, and _exit(0) throws it away");
    posix::exit_now(0);
  }
  posix::waitpid(pid);
  std::printf("  parent: child D printed a line without a newline and called _exit(0): nothing came out\n");
  mproc::Process e([] {
    std::printf("  child E: this text has no newline yet, and mproc::exit(0) flushes it");
    mproc::exit(0);
  });
  e.start();
  e.join();
  std::printf("\n  parent: child E's text came out: mproc::exit flushes stdio before _exit\n");

  // 3. The exit status: only the low 8 bits of the code reach the parent.
  std::printf("3. the exit code keeps 8 bits\n");
  for (const int code : {3, 255, 256, 257, -1}) {
    pid = posix::fork();
    if (pid == 0) posix::exit_now(code);
    char what[64];
    std::snprintf(what, sizeof what, "_exit(%d)", code);
    show_status(what, pid);
  }

  // 4. Signals: the default action of most ends the process on the spot.
  std::printf("4. ended by a signal\n");
  mproc::Process sleeper([] { std::this_thread::sleep_for(60s); });
  sleeper.start();
  sleeper.terminate();
  sleeper.join();
  std::printf("  %-42s -> %s, exitcode %d\n", "terminate() (SIGTERM) a sleeping child",
              sleeper.exit_status()->to_string().c_str(), *sleeper.exitcode());

  mproc::Process aborter([] {
    no_core_files();
    std::abort();  // raises SIGABRT
  });
  aborter.start();
  aborter.join();
  std::printf("  %-42s -> %s, exitcode %d\n", "std::abort()", aborter.exit_status()->to_string().c_str(),
              *aborter.exitcode());

  // A child may catch SIGTERM and end its own way: that is what SIGTERM is for.
  mproc::Event ready;
  mproc::Process graceful([ready]() mutable {
    std::signal(SIGTERM, [](int) { ::_exit(0); });  // only async-signal-safe calls in a handler
    ready.set();
    std::this_thread::sleep_for(60s);
  });
  graceful.start();
  ready.wait();
  graceful.terminate();
  graceful.join();
  std::printf("  %-42s -> %s: it caught SIGTERM\n", "terminate() a child that handles SIGTERM",
              graceful.exit_status()->to_string().c_str());

  // SIGTERM can be ignored; SIGKILL can be neither caught nor ignored.
  mproc::Event ignoring;
  mproc::Process stubborn([ignoring]() mutable {
    std::signal(SIGTERM, SIG_IGN);
    ignoring.set();
    std::this_thread::sleep_for(60s);
  });
  stubborn.start();
  ignoring.wait();
  stubborn.terminate();
  const bool ended = stubborn.join(300ms);
  std::printf("  %-42s -> %s\n", "terminate() a child that ignores SIGTERM",
              ended ? "it ended?!" : "still running after 300 ms");
  stubborn.kill();
  stubborn.join();
  std::printf("  %-42s -> %s, exitcode %d\n", "then kill() (SIGKILL)",
              stubborn.exit_status()->to_string().c_str(), *stubborn.exitcode());

  // The same death seen by a shell: $? is 128 + the signal number.
  const mproc::ExecResult shell = mproc::exec("sh -c 'kill -TERM $$'; echo \"\\$? = $?\"");
  std::printf("  %-42s -> the shell prints %s", "sh -c 'kill -TERM $$'; echo $?", shell.out.c_str());

  std::printf("5. main returns 0: exit(0) runs the atexit handlers\n");
  return 0;
}
