// 12_queue_producer_consumer — mproc::Queue, Python's multiprocessing.Queue: three producer processes put
// jobs into one shared queue and two consumer processes take them out; each job reaches exactly one
// consumer. Once the producers are done, main puts one sentinel per consumer: a consumer stops at the first
// sentinel it gets. Results travel back to main on a second queue.
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "mproc/mproc.hpp"

// A job: a user struct crosses the queue once it has a codec (one line, below).
struct Job {
  int producer;  // -1 marks the sentinel ("no more jobs"), like Python's None
  int number;
};
MPROC_CODEC(Job, producer, number);

constexpr int kProducers = 3, kJobsEach = 4, kConsumers = 2;
constexpr Job kSentinel{-1, 0};

void produce(mproc::Queue<Job> jobs, int id) {
  for (int i = 1; i <= kJobsEach; ++i) jobs.put(Job{id, id * 10 + i});  // put never blocks: no maxsize
  std::printf("  producer %d (pid %d): put %d jobs\n", id, ::getpid(), kJobsEach);
}

void consume(mproc::Queue<Job> jobs, mproc::Queue<std::string> results, int id) {
  int done = 0;
  for (;;) {
    const Job job = jobs.get();  // blocks while the queue is empty
    if (job.producer == kSentinel.producer) break;
    results.put(std::to_string(job.number) + "^2=" + std::to_string(job.number * job.number));
    ++done;
  }
  std::printf("  consumer %d (pid %d): got the sentinel after %d jobs, stopping\n", id, ::getpid(), done);
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, so the processes' lines stay whole

  // Create the queues before starting the processes that use them; pass them by value (a handle).
  mproc::Queue<Job> jobs;
  mproc::Queue<std::string> results;
  std::printf("main: %d producers x %d jobs, %d consumers, one queue\n", kProducers, kJobsEach, kConsumers);

  std::vector<mproc::Process> consumers, producers;
  for (int c = 1; c <= kConsumers; ++c) consumers.emplace_back(consume, jobs, results, c);
  for (int p = 1; p <= kProducers; ++p) producers.emplace_back(produce, jobs, p);
  for (auto& c : consumers) c.start();
  for (auto& p : producers) p.start();

  for (auto& p : producers) p.join();
  std::printf("main: producers joined, putting %d sentinels\n", kConsumers);
  for (int c = 0; c < kConsumers; ++c) jobs.put(kSentinel);  // they come after every job in the queue
  for (auto& c : consumers) c.join();

  // Every consumer has stopped, so every result is in the results queue.
  int count = 0;
  std::set<std::string> distinct;
  while (!results.empty()) {
    distinct.insert(results.get());
    ++count;
  }
  std::printf("main: for example %s\n", distinct.empty() ? "(none)" : distinct.begin()->c_str());
  bool ok = count == kProducers * kJobsEach && distinct.size() == static_cast<std::size_t>(count);
  for (auto& p : producers) ok = ok && p.exitcode() == 0;
  for (auto& c : consumers) ok = ok && c.exitcode() == 0;
  std::printf("main: %d results for %d jobs: every job done exactly once: %s\n", count, kProducers * kJobsEach,
              ok ? "yes" : "no");
  std::printf("main: jobs left in the queue: %zu, zombies left: %zu\n", jobs.qsize(), mproc::count_zombies());
  return ok ? 0 : 1;
}
