// 14_joinable_queue — mproc::JoinableQueue, Python's multiprocessing.JoinableQueue: a queue that counts
// unfinished tasks. Every put() adds one, a worker's task_done() finishes one, and join() blocks until all
// are done: main waits for the work itself, not for the workers to exit.
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "mproc/mproc.hpp"

constexpr int kWorkers = 3, kTasks = 10;

// A worker serves tasks until it gets the sentinel 0. It marks every task done only after its result is
// in the results queue, so once join() returns, every result is there.
void worker(mproc::JoinableQueue<int> tasks, mproc::Queue<long> results, int id) {
  int served = 0;
  for (;;) {
    const int n = tasks.get();
    if (n == 0) {
      tasks.task_done();  // the sentinel was put, so it is a task too
      break;
    }
    long sum = 0;
    for (int i = 1; i <= n; ++i) sum += i;
    results.put(sum);
    tasks.task_done();
    ++served;
  }
  std::printf("  worker %d (pid %d): served %d tasks, got the sentinel\n", id, ::getpid(), served);
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, so the processes' lines stay whole

  mproc::JoinableQueue<int> tasks;
  mproc::Queue<long> results;
  std::vector<mproc::Process> workers;
  for (int w = 1; w <= kWorkers; ++w) workers.emplace_back(worker, tasks, results, w);
  for (auto& w : workers) w.start();

  for (int t = 1; t <= kTasks; ++t) tasks.put(t * 100);  // task: the sum 1 + 2 + ... + t*100
  std::printf("main: put %d tasks, join() waits until each has had its task_done()\n", kTasks);
  tasks.join();
  std::printf("main: join() returned: all %d tasks are done, %zu results are waiting\n", kTasks, results.qsize());

  long total = 0, expected = 0;
  for (int t = 0; t < kTasks; ++t) total += results.get();
  for (long t = 1; t <= kTasks; ++t) expected += t * 100 * (t * 100 + 1) / 2;
  std::printf("main: sum of the results = %ld (expected %ld)\n", total, expected);

  // Stop the workers: one sentinel each, and join() again, for the sentinels.
  for (int w = 0; w < kWorkers; ++w) tasks.put(0);
  tasks.join();
  for (auto& w : workers) w.join();
  std::printf("main: workers joined\n");

  // Every task put has been marked done: one more task_done() is a programming error.
  try {
    tasks.task_done();
    std::printf("main: one task_done() too many -> no error?!\n");
  } catch (const mproc::UsageError& e) {
    std::printf("main: one task_done() too many -> mproc::UsageError: %s\n", e.what());
  }

  bool ok = results.empty() && total == expected;
  for (auto& w : workers) ok = ok && w.exitcode() == 0;
  std::printf("main: zombies left: %zu\n", mproc::count_zombies());
  return ok ? 0 : 1;
}
