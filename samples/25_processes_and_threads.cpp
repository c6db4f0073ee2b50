// 25_processes_and_threads — threads share their process's memory, processes each get a copy: four
// threads add to one counter, four Processes each to their own. A crash kills a thread's whole process,
// never its parent. Last, what creating a thread and a process costs.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

#include "mproc/mproc.hpp"

namespace {

int counter = 0;  // one variable in this process's memory
std::mutex counter_mutex;

void add_1000() {
  for (int i = 0; i < 1000; ++i) {
    std::lock_guard guard(counter_mutex);  // threads share counter, so they need a lock
    ++counter;
  }
}

// The threads of this process, as /proc/self/task lists them (what `ps -L` shows).
std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

double us_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("main: pid %d, thread id %d (the first thread's id is the pid)\n", ::getpid(), ::gettid());

  // 1. Threads: one process, one memory. Each thread has its own id, all have the same pid.
  std::printf("1. four threads, each adds 1000 to counter\n");
  {
    std::latch started(5);  // the four threads and main
    std::latch go(1);
    std::vector<std::thread> threads;
    for (int k = 1; k <= 4; ++k) {
      threads.emplace_back([&, k] {
        std::printf("  thread %d: pid %d, thread id %d\n", k, ::getpid(), ::gettid());
        started.arrive_and_wait();
        go.wait();
        add_1000();
      });
    }
    started.arrive_and_wait();
    std::printf("  while they run, /proc/%d/task lists %zu threads: one process\n", ::getpid(),
                thread_count());
    go.count_down();
    for (auto& t : threads) t.join();
  }
  std::printf("  counter = %d: every thread changed the same variable\n", counter);

  // 2. Processes: each child gets a copy of our memory at fork, counter included.
  counter = 0;
  std::printf("2. four processes, each adds 1000 to counter\n");
  {
    mproc::Event go;              // shared memory, made before start(): the children get it
    mproc::Value<int> shared(0);  // an int in shared memory, asked for explicitly
    std::vector<mproc::Process> children;
    for (int k = 1; k <= 4; ++k) {
      children.emplace_back([go, shared]() mutable {
        go.wait();
        add_1000();
        std::lock_guard guard(shared.get_lock());
        shared.store(shared.load() + 1000);
        std::printf("  %s: pid %d, parent %d, my counter = %d\n", mproc::current_process().name.c_str(),
                    ::getpid(), ::getppid(), counter);
      });
      children.back().start();
    }
    std::printf("  while they run, main has %zu children, each its own process\n",
                mproc::list_children().size());
    go.set();
    for (auto& p : children) p.join();
    std::printf("  counter in main = %d: each child changed its own copy\n", counter);
    std::printf("  a Value<int> in shared memory = %d: sharing must be asked for\n", shared.load());
  }

  // 3. A crash: a signal such as SIGSEGV kills the whole process, every thread of it.
  std::printf("3. a thread of a child process segfaults\n");
  mproc::Process crashy([] {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // no core file, please
    std::thread worker([] {
      std::signal(SIGSEGV, SIG_DFL);  // (a sanitizer build catches SIGSEGV itself; let it kill us)
      std::raise(SIGSEGV);            // what dereferencing a bad pointer would do
    });
    worker.join();
    std::printf("  crashy: still alive?!\n");  // never printed: the whole process is gone
  });
  crashy.name("crashy").start();
  crashy.join();
  std::printf("  crashy: %s, exitcode %d: the whole process died\n",
              crashy.exit_status()->to_string().c_str(), *crashy.exitcode());
  std::printf("  main: still running; in a thread the same crash would have ended main too\n");

  // 4. What creating one costs: a thread shares what exists; a process gets copies of it.
  constexpr int n = 100;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) std::thread([] {}).join();
  const double thread_us = us_since(t0) / n;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    mproc::Process p([] {});
    p.start();
    p.join();
  }
  const double process_us = us_since(t0) / n;
  std::printf("4. create + join, %d of each: thread %.0f us, process %.0f us (%.0fx)\n", n, thread_us,
              process_us, process_us / thread_us);
  std::printf("zombies left: %zu\n", mproc::count_zombies());
  return counter == 0 && crashy.exitcode() == -SIGSEGV ? 0 : 1;
}
