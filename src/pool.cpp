// Pool, AsyncResult's sources and mproc::async: the non-template half (docs/design/pool.md).
//
// CPython's pool.py is the model for the protocol (a task carries a function and its arguments, the
// answer an ok flag and a payload, a sentinel stops a worker, maxtasks retires it); the transport is
// not: each worker has its own SOCK_SEQPACKET socketpair with the parent, so a worker that dies can
// hold no shared lock and leave no half-written shared queue behind. One supervisor thread per Pool
// ("pool thread") owns the parent's ends, dispatches chunks, notices deaths on the workers' sentinels
// (pidfds), enforces task_timeout and forks replacements.
#include "mproc/pool.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>

#include "posix/fd.hpp"
#include "reaper_internal.hpp"
#include "runtime.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint8_t kRun = 1, kExit = 2, kDone = 3, kBatch = 4;
// A second chunk is sent to a busy worker (prefetch) only when it is this small, so the send cannot
// fill the socket buffer: the pool thread never blocks writing to a worker that is busy running a
// chunk (and maybe writing a large answer to us at the same time). Larger chunks wait for an idle
// worker, which is blocked in recv and reads them at once.
constexpr std::size_t kPrefetchBytes = 32 * 1024;  // bytes of prefetched (not running) chunks per worker
constexpr std::size_t kPrefetch = 16;               // chunks in flight per worker, the running one included
// A busy worker is topped up only once it holds at most this many chunks, and then up to kPrefetch at
// once: the chunks given to one worker in one round travel as one Batch message (one send for the
// pool thread, one recv for the worker). Refilling one slot per answer would send (and make the worker
// receive) one message per chunk, and a system call costs ~2 µs on the reference VM: with chunksize 1
// that was most of the per-task cost.
constexpr std::size_t kRefillAt = kPrefetch / 2;
// Run messages to one worker are put in one Batch while the batch stays this small (one record of the
// SEQPACKET transport, so its send is all or nothing).
constexpr std::size_t kBatchBytes = 48 * 1024;

std::uint64_t read_u64(ByteReader& r) {
  std::uint64_t v;
  std::memcpy(&v, r.take(8), 8);
  return v;
}

using Clock = std::chrono::steady_clock;

std::optional<Clock::time_point> deadline_of(std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return std::nullopt;
  // A timeout of centuries is "forever" (and would overflow the clock).
  if (*timeout > std::chrono::hours(24 * 365 * 100)) return std::nullopt;
  return Clock::now() + std::max(*timeout, std::chrono::nanoseconds::zero());
}

template <class Pred>
bool wait_on(std::condition_variable& cv, std::unique_lock<std::mutex>& lk, std::optional<Clock::time_point> dl,
             Pred pred) {
  if (!dl) {
    cv.wait(lk, pred);
    return true;
  }
  return cv.wait_until(lk, *dl, pred);
}

}  // namespace

// ---------------------------------------------------------------- task records

void write_current_exception(ByteWriter& out) {
  const ExceptionText e = describe_current_exception();
  out.write_byte(std::byte{0});
  encode_to(out, e.type);
  encode_to(out, e.what);
}

bool read_task_status(ByteReader& in, std::exception_ptr& err) { return task_succeeded(in, err); }

void read_task_failure(ByteReader& in, std::byte status, std::exception_ptr& err) {
  if (status != std::byte{0}) {
    err = std::make_exception_ptr(CodecError("mproc::Pool: malformed task record"));
    return;
  }
  std::string type, what;
  decode_from(in, type);
  decode_from(in, what);
  err = std::make_exception_ptr(RemoteError(std::move(type), what));
}

// ---------------------------------------------------------------- Job

ResultSource::~ResultSource() = default;

bool Job::wait(std::optional<std::chrono::nanoseconds> timeout) {
  std::unique_lock lk(m_);
  return wait_on(cv_, lk, deadline_of(timeout), [&] { return complete_locked(); });
}

bool Job::ready() {
  std::lock_guard lk(m_);
  return complete_locked();
}

std::size_t Job::chunk_count() {
  std::lock_guard lk(m_);
  return static_cast<std::size_t>(submitted_);
}

ChunkOutcome& Job::chunk(std::size_t i) {
  std::lock_guard lk(m_);
  auto it = outcomes_.find(i);
  if (it == outcomes_.end()) throw UsageError("mproc::Pool: internal: chunk outcome missing");
  return it->second;
}

void Job::finish_input() {
  std::lock_guard lk(m_);
  input_done_ = true;
  cv_.notify_all();
}

std::size_t Job::wait_progress(std::size_t seen, std::optional<std::chrono::nanoseconds> timeout) {
  std::unique_lock lk(m_);
  ++progress_waiters_;
  wait_on(cv_, lk, deadline_of(timeout), [&] { return tasks_done_ > seen || complete_locked(); });
  --progress_waiters_;
  return tasks_done_;
}

std::size_t Job::total_tasks() {
  std::lock_guard lk(m_);
  return tasks_total_;
}

std::optional<ChunkOutcome> Job::take(std::optional<std::uint64_t> seq,
                                      std::optional<std::chrono::nanoseconds> timeout) {
  std::unique_lock lk(m_);
  const bool ok = wait_on(cv_, lk, deadline_of(timeout), [&] {
    return seq ? outcomes_.count(*seq) != 0 : !completion_order_.empty();
  });
  if (!ok) return std::nullopt;
  std::uint64_t s;
  if (seq) {
    s = *seq;
    std::erase(completion_order_, s);
  } else {
    s = completion_order_.front();
    completion_order_.pop_front();
  }
  auto node = outcomes_.extract(s);
  return std::move(node.mapped());
}

void Job::cancel() noexcept {
  std::lock_guard lk(m_);
  cancelled_ = true;
  outcomes_.clear();
  completion_order_.clear();
}

bool Job::cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }

std::uint64_t Job::add_chunk(std::size_t count) {
  std::lock_guard lk(m_);
  tasks_total_ += count;
  return submitted_++;
}

void Job::deliver(std::uint64_t seq, ChunkOutcome&& outcome) {
  std::lock_guard lk(m_);
  ++completed_;
  tasks_done_ += outcome.count;
  if (!cancelled_) {
    outcomes_.emplace(seq, std::move(outcome));
    if (stream_) completion_order_.push_back(seq);
  }
  // A map() waits for the whole job: waking it for every chunk would cost a context switch per chunk.
  if (stream_ || progress_waiters_ > 0 || complete_locked()) cv_.notify_all();
}

// ---------------------------------------------------------------- the pool

namespace {

struct Chunk {
  std::shared_ptr<Job> job;
  std::uint64_t seq = 0;  // within the job
  std::uint64_t id = 0;   // pool-wide, carried by Run and Done
  std::size_t count = 0;
  std::shared_ptr<const std::vector<std::byte>> msg;
  int undelivered = 0;  // times its Run message could not be delivered to a worker (see loop())
};

// A chunk whose Run message could not be sent because its worker was already gone goes back to the
// queue at most this many times; after that its worker's death fails it as usual (WorkerLost). The
// bound keeps the promise that a pool whose workers die at once (an initializer that throws) drains
// its queue with errors instead of retrying forever.
constexpr int kMaxUndelivered = 3;

struct Worker {
  explicit Worker(Process&& p) : proc(std::move(p)) {}
  Process proc;
  Connection conn;
  std::string name;
  pid_t pid = 0;
  int conn_fd = -1;
  std::deque<Chunk> inflight;  // sent, not answered; the front one is running
  std::size_t tasks_given = 0;
  Clock::time_point running_since{};
  bool exit_sent = false;
  bool eof = false;
  bool timed_out = false;
  std::uint64_t timed_out_chunk = 0;  // the chunk that ran too long (its answer may still beat the kill)
};

struct Completion {
  std::shared_ptr<Job> job;
  std::uint64_t seq;
  ChunkOutcome outcome;
};

void deliver_all(std::vector<Completion>& v) noexcept {
  for (auto& c : v) {
    try {
      c.job->deliver(c.seq, std::move(c.outcome));
    } catch (...) {
    }
  }
  v.clear();
}

// The worker's Done message under construction: a buffer that grows without zero-filling (a
// VectorWriter's resize() writes zeros over every byte before the codec overwrites them: for a
// million-task map that was a third of the worker's instructions). Kept from chunk to chunk.
class DoneWriter final : public ByteWriter {
 public:
  DoneWriter() { grow(0, 4096); }
  void reset() noexcept { pos_ = buf_.get(); }
  std::span<const std::byte> bytes() const noexcept {
    return {buf_.get(), static_cast<std::size_t>(pos_ - buf_.get())};
  }

 private:
  void grow(std::size_t used, std::size_t want) {
    auto nb = std::make_unique_for_overwrite<std::byte[]>(want);
    if (used) std::memcpy(nb.get(), buf_.get(), used);
    buf_ = std::move(nb);
    pos_ = buf_.get() + used;
    end_ = buf_.get() + want;
  }
  void overflow(const std::byte* src, std::size_t n) override {
    const auto used = static_cast<std::size_t>(pos_ - buf_.get());
    const auto cap = static_cast<std::size_t>(end_ - buf_.get());
    grow(used, std::max(cap * 2, used + n));
    std::memcpy(pos_, src, n);
    pos_ += n;
  }
  std::unique_ptr<std::byte[]> buf_;
};

// In the worker: run the chunk of one Run message and send its Done. False: not a Run message.
bool run_chunk(Connection& conn, std::span<const std::byte> msg, DoneWriter& out) {
  ByteReader r{msg};
  const auto kind = static_cast<std::uint8_t>(r.read_byte());
  if (kind != kRun) return false;
  const std::uint64_t id = read_u64(r);
  const auto invoker = reinterpret_cast<Invoker>(static_cast<std::uintptr_t>(read_u64(r)));
  const auto fn = static_cast<std::uintptr_t>(read_u64(r));
  const auto count = static_cast<std::size_t>(read_u64(r));
  out.reset();
  out.write_byte(std::byte{kDone});
  out.write_u64(id);
  invoker(fn, r, count, out);
  // One Done per chunk, sent before the next chunk starts: if the worker dies in a later chunk, this
  // one's answer is already with the parent, which then blames exactly the chunk that was running.
  conn.send_bytes(out.bytes());
  return true;
}

// The worker process: run the chunks the parent sends until Exit or EOF.
void worker_main(Connection conn, const std::function<void()>& initializer) {
  if (initializer) initializer();  // an exception here ends the worker with code 1 (run_child_and_exit)
  DoneWriter out;
  for (;;) {
    std::vector<std::byte> msg;
    try {
      msg = conn.recv_bytes();
    } catch (const EOFError&) {
      return;
    }
    const std::span<const std::byte> all(msg);
    if (!all.empty() && static_cast<std::uint8_t>(all[0]) == kBatch) {
      // Batch: u8 4, then per Run message a u64 length and the message, run in order.
      ByteReader r{all.subspan(1)};
      while (r.remaining() > 0) {
        const auto len = static_cast<std::size_t>(read_u64(r));
        if (!run_chunk(conn, std::span<const std::byte>(r.take(len), len), out)) return;
      }
    } else if (!run_chunk(conn, all, out)) {
      return;
    }
  }
}

}  // namespace

class PoolCore {
 public:
  explicit PoolCore(PoolOptions o) : opts(std::move(o)) {
    n = opts.processes ? opts.processes : process_cpu_count();
    creator = ::getpid();
  }
  ~PoolCore() {
    if (thread.joinable()) {
      // Only in a forked child (the parent always joins it in terminate/join): the thread does not
      // exist here, and a joinable std::thread must be neither joined nor destroyed.
      new std::thread(std::move(thread));
    }
    if (::getpid() == creator) {
      for (auto& w : workers) drop_conn(*w);
      if (wake) forget_in_children(wake.get());
    } else {
      // Leak the workers: their Process objects belong to the parent.
      for (auto& w : workers) (void)w.release();
    }
  }

  void start();
  void pool_thread() noexcept;
  void loop();
  void terminate();
  void join();
  void close();
  void check_usable(const char* what);
  void check_open(const char* what);
  void submit(const std::shared_ptr<Job>& job, std::vector<std::byte>&& msg, std::size_t count);

  PoolOptions opts;
  unsigned n = 1;
  pid_t creator = 0;

 private:
  enum class State { running, closed, terminated };
  void wakeup() noexcept {
    std::uint64_t one = 1;
    ssize_t r;
    do {
      r = ::write(wake.get(), &one, sizeof one);
    } while (r < 0 && errno == EINTR);
  }
  std::unique_ptr<Worker> spawn_locked();
  void drop_conn(Worker& w) noexcept {
    if (w.conn_fd >= 0) forget_in_children(w.conn_fd);
    w.conn_fd = -1;
    w.conn.close();
  }
  bool all_idle_locked() const {
    if (!queue.empty()) return false;
    for (auto& w : workers)
      if (!w->inflight.empty()) return false;
    return true;
  }
  void handle_done_locked(Worker& w, std::vector<std::byte>&& bytes, std::vector<Completion>& out);
  void handle_death_locked(std::size_t index, std::vector<Completion>& out);
  void requeue_undelivered_locked(const std::vector<std::pair<Worker*, const std::vector<std::byte>*>>& undelivered);
  void fail_everything_locked(const std::exception_ptr& err, std::vector<Completion>& out);
  void reap_workers() noexcept;

  std::mutex m;
  State state = State::running;
  bool join_requested = false;
  bool stop = false;         // the pool thread must exit now (terminate)
  bool thread_done = false;  // the pool thread has exited
  bool wake_pending = false; // a submit wrote the eventfd and the pool thread has not taken the lock since
  std::deque<Chunk> queue;
  std::vector<std::unique_ptr<Worker>> workers;
  int next_number = 1;
  std::uint64_t next_chunk_id = 1;
  std::optional<Clock::time_point> spawn_retry_at;
  posix::UniqueFd wake;
  std::thread thread;
  std::condition_variable thread_done_cv;
  std::mutex shutdown_m;  // serializes joining the thread and reaping the workers
  bool reaped = false;
};

std::unique_ptr<Worker> PoolCore::spawn_locked() {
  auto [parent_end, child_end] = Pipe(true);
  auto w = std::make_unique<Worker>(Process(&worker_main, child_end, opts.initializer));
  w->name = opts.name_prefix + "-" + std::to_string(next_number++);
  w->conn = parent_end;
  w->conn_fd = parent_end.fileno();
  // Every child forked from now on (other workers, async children, the user's processes) closes our
  // end first thing; this worker too, which only needs child_end.
  close_in_children(w->conn_fd);
  try {
    w->proc.name(w->name).daemon(true);
    w->proc.start();
  } catch (...) {
    drop_conn(*w);
    throw;
  }
  child_end.close();
  w->pid = *w->proc.pid();
  return w;
}

void PoolCore::start() {
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) posix::throw_errno("mproc::Pool: eventfd");
  wake.reset(efd);
  close_in_children(efd);
  {
    std::lock_guard lk(m);
    try {
      for (unsigned i = 0; i < n; ++i) workers.push_back(spawn_locked());
    } catch (...) {
      state = State::terminated;
      stop = true;
      thread_done = true;
      for (auto& w : workers) {
        try {
          w->proc.kill();
        } catch (...) {
        }
      }
      throw;  // the destructor reaps them (through reap_workers in ~Pool's terminate)
    }
  }
  internal_threads().fetch_add(1);
  try {
    thread = std::thread([this] { pool_thread(); });
  } catch (...) {
    internal_threads().fetch_sub(1);
    throw;
  }
}

void PoolCore::check_usable(const char* what) {
  if (::getpid() != creator)
    throw UsageError(std::string("mproc::Pool::") + what + ": a Pool cannot be used in a forked child");
}

void PoolCore::check_open(const char* what) {
  check_usable(what);
  std::lock_guard lk(m);
  if (state == State::closed) throw UsageError(std::string("mproc::Pool::") + what + ": the pool is closed");
  if (state == State::terminated) throw UsageError(std::string("mproc::Pool::") + what + ": the pool is terminated");
}

void PoolCore::submit(const std::shared_ptr<Job>& job, std::vector<std::byte>&& msg, std::size_t count) {
  Chunk c;
  c.job = job;
  c.count = count;
  c.seq = job->add_chunk(count);
  std::exception_ptr refused;
  {
    std::lock_guard lk(m);
    if (msg.size() > Connection::default_max_message_size) {
      refused = std::make_exception_ptr(Error("mproc::Pool: a chunk of " + std::to_string(msg.size()) +
                                              " bytes is over the 1 GiB message limit (use a smaller chunksize)"));
    } else if (stop || thread_done) {
      refused = std::make_exception_ptr(
          Error(state == State::terminated ? "pool terminated" : "pool joined before this task was submitted"));
    } else {
      c.id = next_chunk_id++;
      std::memcpy(msg.data() + 1, &c.id, 8);
      const std::uint64_t cnt = count;
      std::memcpy(msg.data() + 25, &cnt, 8);
      c.msg = std::make_shared<const std::vector<std::byte>>(std::move(msg));
      queue.push_back(std::move(c));
      if (wake_pending) return;  // the pool thread has not looked at the queue since the last wakeup
      wake_pending = true;
    }
  }
  if (refused) {
    ChunkOutcome o;
    o.count = count;
    o.error = refused;
    job->deliver(c.seq, std::move(o));
    return;
  }
  wakeup();
}

void PoolCore::close() {
  check_usable("close");
  std::lock_guard lk(m);
  if (state == State::running) state = State::closed;
}

void PoolCore::fail_everything_locked(const std::exception_ptr& err, std::vector<Completion>& out) {
  auto fail = [&](Chunk& c) {
    ChunkOutcome o;
    o.count = c.count;
    o.error = err;
    out.push_back({std::move(c.job), c.seq, std::move(o)});
  };
  for (auto& c : queue) fail(c);
  queue.clear();
  for (auto& w : workers) {
    for (auto& c : w->inflight) fail(c);
    w->inflight.clear();
  }
}

void PoolCore::terminate() {
  check_usable("terminate");
  std::vector<Completion> failed;
  {
    std::lock_guard lk(m);
    state = State::terminated;
    stop = true;
    fail_everything_locked(std::make_exception_ptr(Error("pool terminated")), failed);
    for (auto& w : workers) {
      try {
        w->proc.terminate();  // SIGTERM now; the pool thread may be blocked writing to this worker
      } catch (...) {
      }
    }
  }
  wakeup();
  deliver_all(failed);
  {
    // The pool thread may be blocked writing to a worker that ignores SIGTERM: after 100 ms, SIGKILL.
    std::unique_lock lk(m);
    if (!thread_done_cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return thread_done; })) {
      for (auto& w : workers) {
        try {
          w->proc.kill();
        } catch (...) {
        }
      }
    }
  }
  reap_workers();
}

void PoolCore::join() {
  check_usable("join");
  {
    std::lock_guard lk(m);
    if (state == State::running) throw UsageError("mproc::Pool::join: call close() or terminate() first");
    join_requested = true;
  }
  wakeup();
  reap_workers();
}

// Join the pool thread, then reap whatever workers are left (after terminate: SIGTERM was sent; give
// them up to 100 ms, then SIGKILL).
void PoolCore::reap_workers() noexcept {
  std::lock_guard sd(shutdown_m);
  if (thread.joinable()) {
    thread.join();
    internal_threads().fetch_sub(1);
  }
  if (reaped) return;
  std::vector<std::unique_ptr<Worker>> ws;
  {
    std::lock_guard lk(m);
    ws = std::move(workers);
    workers.clear();
  }
  const auto grace_end = Clock::now() + std::chrono::milliseconds(100);
  for (auto& w : ws) {
    try {
      w->proc.terminate();
      auto left = grace_end - Clock::now();
      if (left < Clock::duration::zero()) left = Clock::duration::zero();
      if (!w->proc.join(left)) {
        w->proc.kill();
        w->proc.join();
      }
    } catch (...) {
    }
    drop_conn(*w);
  }
  reaped = true;
}

void PoolCore::handle_done_locked(Worker& w, std::vector<std::byte>&& bytes, std::vector<Completion>& out) {
  if (bytes.size() < 9 || static_cast<std::uint8_t>(bytes[0]) != kDone) return;
  std::uint64_t id;
  std::memcpy(&id, bytes.data() + 1, 8);
  if (w.inflight.empty() || w.inflight.front().id != id) return;  // failed by terminate meanwhile
  Chunk c = std::move(w.inflight.front());
  w.inflight.pop_front();
  if (!w.inflight.empty()) w.running_since = Clock::now();
  ChunkOutcome o;
  o.bytes = std::move(bytes);
  o.offset = 9;
  o.count = c.count;
  out.push_back({std::move(c.job), c.seq, std::move(o)});
}

void PoolCore::handle_death_locked(std::size_t index, std::vector<Completion>& out) {
  Worker& w = *workers[index];
  std::optional<ExitStatus> st;
  try {
    if (!w.proc.join(std::chrono::seconds(1))) {  // the sentinel said it ended: this is immediate
      w.proc.kill();
      w.proc.join();
    }
    st = w.proc.exit_status();
  } catch (...) {
  }
  if (w.inflight.empty() && !w.exit_sent) {
    // It died on its own while idle (an initializer that throws, an outside kill): replace it, but at
    // most 10 times a second, so a failing initializer does not make an idle pool fork in a busy loop.
    spawn_retry_at = Clock::now() + std::chrono::milliseconds(100);
  }
  if (!w.inflight.empty()) {
    Chunk c = std::move(w.inflight.front());
    w.inflight.pop_front();
    ChunkOutcome o;
    o.count = c.count;
    const std::string who = "worker " + w.name + " (pid " + std::to_string(w.pid) + ")";
    if (w.timed_out && opts.task_timeout && c.id == w.timed_out_chunk) {
      const auto ms = opts.task_timeout->count() * static_cast<long long>(c.count);
      o.error = std::make_exception_ptr(
          TimeoutError("task timed out after " + std::to_string(ms) + " ms; " + who + " killed"));
    } else {
      const std::string how = st ? st->to_string() : std::string("ended (status unknown)");
      o.error = std::make_exception_ptr(
          WorkerLost(who + " died while running a task: " + how, st ? st->exitcode() : -1));
    }
    out.push_back({std::move(c.job), c.seq, std::move(o)});
    // The chunks behind it were never started: back to the front of the queue, in order.
    for (auto it = w.inflight.rbegin(); it != w.inflight.rend(); ++it) queue.push_front(std::move(*it));
    w.inflight.clear();
  }
  drop_conn(w);
  workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(index));
}

void PoolCore::pool_thread() noexcept {
  try {
    loop();
  } catch (const std::exception& e) {
    std::vector<Completion> failed;
    {
      std::lock_guard lk(m);
      stop = true;
      fail_everything_locked(std::make_exception_ptr(Error(std::string("mproc::Pool: pool thread failed: ") + e.what())),
                             failed);
    }
    deliver_all(failed);
  } catch (...) {
  }
  std::lock_guard lk(m);
  thread_done = true;
  thread_done_cv.notify_all();
}

void PoolCore::loop() {
  std::vector<pollfd> fds;
  struct Ref {
    Worker* w;
    bool sentinel;
  };
  std::vector<Ref> refs;
  std::vector<Completion> done;
  std::vector<std::pair<Worker*, std::vector<std::byte>>> msgs;
  std::vector<std::pair<Worker*, std::shared_ptr<const std::vector<std::byte>>>> sends;
  std::vector<std::pair<Worker*, const std::vector<std::byte>*>> undelivered;
  std::vector<bool> refill;  // per worker, this round: may it be topped up (kRefillAt)?
  // What one send carries: one message (parts empty), or a Batch of the Run messages in parts.
  struct Batch {
    Worker* w;
    std::shared_ptr<const std::vector<std::byte>> msg;
    std::vector<const std::vector<std::byte>*> parts;
  };
  std::vector<Batch> batches;
  static const auto exit_msg = std::make_shared<const std::vector<std::byte>>(1, std::byte{kExit});

  for (;;) {
    int timeout_ms = -1;
    {
      std::lock_guard lk(m);
      if (stop) return;
      if (join_requested && queue.empty() && workers.empty()) {
        // Under the same lock as the check: a submit() from now on is refused instead of queued for
        // a thread that has stopped looking (pool_thread() sets it again and notifies).
        thread_done = true;
        return;
      }
      fds.clear();
      refs.clear();
      fds.push_back({wake.get(), POLLIN, 0});
      refs.push_back({nullptr, false});
      std::optional<Clock::time_point> next;
      for (auto& w : workers) {
        if (!w->eof) {
          fds.push_back({w->conn_fd, POLLIN, 0});
          refs.push_back({w.get(), false});
        }
        fds.push_back({w->proc.sentinel(), POLLIN, 0});
        refs.push_back({w.get(), true});
        if (opts.task_timeout && !w->inflight.empty() && !w->timed_out) {
          auto dl = w->running_since + *opts.task_timeout * static_cast<long long>(w->inflight.front().count);
          if (!next || dl < *next) next = dl;
        }
      }
      if (spawn_retry_at && (!next || *spawn_retry_at < *next)) next = spawn_retry_at;
      if (next) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
        timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 1'000'000));
      }
    }
    int r = ::poll(fds.data(), fds.size(), timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      posix::throw_errno("mproc::Pool: poll");
    }
    if (fds[0].revents) {
      std::uint64_t v;
      while (::read(wake.get(), &v, sizeof v) > 0) {
      }
    }

    // Receive without the lock (only this thread touches the workers' connections).
    msgs.clear();
    std::vector<Worker*> dead;
    // A worker that is alive but whose channel failed: end it; its death then fails the chunk it held
    // and requeues the rest, as for any death. Under m, like every other use of a worker's Process.
    auto kill_worker = [&](Worker* w) {
      std::lock_guard lk(m);
      try {
        w->proc.kill();
      } catch (...) {  // it ended already
      }
    };
    auto receive = [&](Worker* w, std::size_t limit) {
      for (std::size_t k = 0; k < limit && !w->eof; ++k) {
        try {
          if (k > 0 && !w->conn.poll()) break;
          msgs.emplace_back(w, w->conn.recv_bytes());
        } catch (const EOFError&) {  // the worker is ending: its sentinel follows
          w->eof = true;
        } catch (...) {  // a broken frame or bad_alloc: the worker may live on, so end it
          w->eof = true;
          kill_worker(w);
        }
      }
    };
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      if (refs[i].sentinel) {
        dead.push_back(refs[i].w);
      } else {
        receive(refs[i].w, 64);
      }
    }
    // Answers a dead worker sent before dying still count. A worker that dies with unread Run messages
    // makes our recv report ECONNRESET (which Connection reports as EOF) once, and on some kernels
    // before the messages still queued for us: so read on until EOF is reported twice in a row.
    for (Worker* w : dead) {
      for (int eofs = 0; eofs < 2;) {
        try {
          if (!w->conn.poll()) break;
          msgs.emplace_back(w, w->conn.recv_bytes());
          eofs = 0;
        } catch (const EOFError&) {
          ++eofs;
        } catch (...) {
          break;
        }
      }
      w->eof = true;
    }

    sends.clear();
    {
      std::lock_guard lk(m);
      wake_pending = false;
      if (stop) return;
      for (auto& [w, bytes] : msgs) handle_done_locked(*w, std::move(bytes), done);
      for (Worker* w : dead) {
        for (std::size_t i = 0; i < workers.size(); ++i) {
          if (workers[i].get() == w) {
            handle_death_locked(i, done);
            break;
          }
        }
      }
      const auto now = Clock::now();
      // task_timeout: kill the worker; its death (sentinel) fails the chunk with TimeoutError.
      if (opts.task_timeout) {
        for (auto& w : workers) {
          if (w->inflight.empty() || w->timed_out) continue;
          auto dl = w->running_since + *opts.task_timeout * static_cast<long long>(w->inflight.front().count);
          if (now >= dl) {
            w->timed_out = true;
            w->timed_out_chunk = w->inflight.front().id;
            try {
              w->proc.kill();
            } catch (...) {
            }
          }
        }
      }
      // Retire workers that reached maxtasksperchild once their chunks are answered; on join, all.
      const bool joining_idle = join_requested && all_idle_locked();
      for (auto& w : workers) {
        if (w->exit_sent || !w->inflight.empty()) continue;
        if (joining_idle || (opts.maxtasksperchild && w->tasks_given >= opts.maxtasksperchild)) {
          w->exit_sent = true;
          sends.emplace_back(w.get(), exit_msg);
        }
      }
      // Keep n workers (not counting retiring or killed ones).
      if (join_requested && queue.empty()) {
        spawn_retry_at.reset();  // nothing will be spawned: a stale deadline would make poll() spin
      } else if (!spawn_retry_at || now >= *spawn_retry_at) {
        std::size_t live = 0;
        for (auto& w : workers)
          if (!w->exit_sent && !w->timed_out) ++live;
        spawn_retry_at.reset();
        for (; live < n; ++live) {
          try {
            workers.push_back(spawn_locked());
          } catch (const std::exception& e) {
            std::fprintf(stderr, "mproc: Pool: cannot start a worker (retrying in 100 ms): %s\n", e.what());
            spawn_retry_at = now + std::chrono::milliseconds(100);
            break;
          }
        }
      }
      // Dispatch: first one chunk to each idle worker, then prefetch small chunks round-robin (a worker
      // runs its chunks in order, so only the first unanswered one can be running when it dies).
      auto usable = [&](Worker& w) {
        return !w.exit_sent && !w.timed_out && !w.eof &&
               !(opts.maxtasksperchild && w.tasks_given >= opts.maxtasksperchild);
      };
      auto give = [&](Worker& w) {
        Chunk c = std::move(queue.front());
        queue.pop_front();
        if (w.inflight.empty()) w.running_since = now;
        w.tasks_given += c.count;
        sends.emplace_back(&w, c.msg);
        w.inflight.push_back(std::move(c));
      };
      auto drop_cancelled = [&] {
        while (!queue.empty() && queue.front().job->cancelled()) queue.pop_front();
        return !queue.empty();
      };
      refill.clear();
      for (auto& w : workers) refill.push_back(w->inflight.size() <= kRefillAt);
      for (auto& w : workers)
        if (w->inflight.empty() && usable(*w) && drop_cancelled()) give(*w);
      for (bool progress = true; progress && drop_cancelled();) {
        progress = false;
        for (std::size_t i = 0; i < workers.size(); ++i) {
          Worker* w = workers[i].get();
          if (!refill[i] || w->inflight.empty() || w->inflight.size() >= kPrefetch || !usable(*w) ||
              !drop_cancelled())
            continue;
          std::size_t bytes = queue.front().msg->size();
          for (std::size_t k = 1; k < w->inflight.size(); ++k) bytes += w->inflight[k].msg->size();
          if (bytes > kPrefetchBytes) continue;
          give(*w);
          progress = true;
        }
      }
    }
    deliver_all(done);
    undelivered.clear();
    // Several Run messages for one worker go as one Batch (see kRefillAt); the order of a worker's
    // messages is kept, which is all that matters (each worker has its own channel).
    batches.clear();
    for (std::size_t i = 0; i < sends.size(); ++i) {
      Worker* w = sends[i].first;
      if (!sends[i].second) continue;  // taken into an earlier batch
      const auto& first = sends[i].second;
      if (first == exit_msg || first->size() > kBatchBytes) {
        batches.push_back({w, first, {}});
        continue;
      }
      std::size_t bytes = 1 + 8 + first->size();
      std::vector<std::size_t> parts{i};
      for (std::size_t j = i + 1; j < sends.size(); ++j) {
        if (sends[j].first != w || !sends[j].second) continue;
        if (sends[j].second == exit_msg) break;  // never happens (Exit goes to idle workers), but keep the order
        if (bytes + 8 + sends[j].second->size() > kBatchBytes) break;
        bytes += 8 + sends[j].second->size();
        parts.push_back(j);
      }
      if (parts.size() == 1) {
        batches.push_back({w, first, {}});
        continue;
      }
      auto b = std::make_shared<std::vector<std::byte>>();
      b->reserve(bytes);
      b->push_back(std::byte{kBatch});
      for (std::size_t j : parts) {
        const std::uint64_t len = sends[j].second->size();
        const auto* lp = reinterpret_cast<const std::byte*>(&len);
        b->insert(b->end(), lp, lp + 8);
        b->insert(b->end(), sends[j].second->begin(), sends[j].second->end());
      }
      Batch batch{w, b, {}};
      batch.parts.reserve(parts.size());
      for (std::size_t j : parts) {
        batch.parts.push_back(sends[j].second.get());
        if (j != i) sends[j].second.reset();
      }
      batches.push_back(std::move(batch));
    }
    for (auto& batch : batches) {
      Worker* w = batch.w;
      const auto& msg = batch.msg;
      try {
        w->conn.send_bytes(*msg);
      } catch (const std::system_error& e) {
        // EPIPE: the worker's end is closed, so the worker is dead (it died after this iteration's poll,
        // or before it with its sentinel not yet seen) and the message did not reach it — not whole:
        // the worker never started this chunk. Found by the chaos tests: a worker killed while idle was
        // handed a chunk in the same instant, and that chunk then failed with WorkerLost although no
        // task of it ever ran ("tasks not yet handed to a worker are never lost"). It goes back to the
        // queue instead (below). Its sentinel reports the death as usual.
        if (e.code().category() == std::system_category() && e.code().value() == EPIPE && msg != exit_msg) {
          if (batch.parts.empty()) {
            undelivered.emplace_back(w, msg.get());
          } else {
            for (auto* part : batch.parts) undelivered.emplace_back(w, part);
          }
        }
        kill_worker(w);
      } catch (...) {
        // A send can also fail with the worker alive and idle (bad_alloc): then nothing would ever
        // answer the chunk, so end the worker; its death fails the chunk it holds and requeues the rest.
        kill_worker(w);
      }
    }
    if (!undelivered.empty()) {
      std::lock_guard lk(m);
      requeue_undelivered_locked(undelivered);
    }
  }
}

// Chunks whose Run message never reached their (dead) worker: out of its in-flight list, back to the
// front of the queue in the order they were dispatched, so its death fails only a chunk it may have
// started. The sends to one worker follow its in-flight order, and once one fails with EPIPE every
// later one to it does too: what stays in flight is what was delivered. A chunk that is no longer in
// flight (terminate() failed it meanwhile) is left alone; one that could not be delivered
// kMaxUndelivered times stays and fails with its worker, as before.
void PoolCore::requeue_undelivered_locked(
    const std::vector<std::pair<Worker*, const std::vector<std::byte>*>>& undelivered) {
  for (auto it = undelivered.rbegin(); it != undelivered.rend(); ++it) {
    auto& inflight = it->first->inflight;
    auto c = std::find_if(inflight.begin(), inflight.end(), [&](const Chunk& ch) { return ch.msg.get() == it->second; });
    if (c == inflight.end() || c->undelivered >= kMaxUndelivered) continue;
    ++c->undelivered;
    queue.push_front(std::move(*c));
    inflight.erase(c);
  }
}

namespace {
PoolCore& checked(const std::shared_ptr<PoolCore>& c, const char* what) {
  if (!c) throw UsageError(std::string("mproc::Pool::") + what + ": use of a moved-from Pool");
  c->check_usable(what);
  return *c;
}
}  // namespace

std::vector<std::byte> run_message(Invoker invoker, std::uintptr_t fn) {
  std::vector<std::byte> msg(run_header_size);
  msg[0] = std::byte{kRun};
  const std::uint64_t inv = reinterpret_cast<std::uintptr_t>(invoker), f = fn;
  std::memcpy(msg.data() + 9, &inv, 8);
  std::memcpy(msg.data() + 17, &f, 8);
  return msg;
}

std::shared_ptr<Job> pool_new_job(PoolCore& core, bool stream, const char* what) {
  core.check_open(what);
  return std::make_shared<Job>(stream);
}

void pool_submit(PoolCore& core, const std::shared_ptr<Job>& job, std::vector<std::byte>&& msg, std::size_t count) {
  core.submit(job, std::move(msg), count);
}

unsigned pool_processes(const PoolCore& core) noexcept { return core.n; }

// ---------------------------------------------------------------- async

namespace {

class AsyncSource final : public ResultSource {
 public:
  AsyncSource(Process&& p, Connection reader) : proc_(std::move(p)), reader_(std::move(reader)) {
    pid_ = proc_.pid().value_or(0);
  }

  bool wait(std::optional<std::chrono::nanoseconds> timeout) override {
    if (done_.load(std::memory_order_acquire)) return true;
    const auto dl = deadline_of(timeout);
    std::unique_lock lk(m_, std::defer_lock);
    if (dl) {
      if (!lk.try_lock_until(*dl)) return done_.load(std::memory_order_acquire);
    } else {
      lk.lock();
    }
    if (done_.load(std::memory_order_acquire)) return true;
    return drive(dl);
  }

  bool ready() override {
    if (done_.load(std::memory_order_acquire)) return true;
    std::unique_lock lk(m_, std::try_to_lock);
    if (!lk.owns_lock()) return false;
    if (done_.load(std::memory_order_acquire)) return true;
    return drive(Clock::now());
  }

  std::size_t chunk_count() override { return 1; }
  ChunkOutcome& chunk(std::size_t) override { return outcome_; }

 private:
  // Under m_: wait for the answer or the child's end until dl. True when done.
  bool drive(std::optional<Clock::time_point> dl) {
    std::optional<std::chrono::nanoseconds> left;
    if (dl) left = std::max(Clock::duration::zero(), *dl - Clock::now());
    pollfd p[2] = {{reader_.fileno(), POLLIN, 0}, {proc_.sentinel(), POLLIN, 0}};
    if (posix::poll_until(p, 2, posix::Deadline(left)) == 0) return false;
    outcome_.count = 1;
    bool answered = false;
    if (p[0].revents || reader_.poll()) {
      try {
        outcome_.bytes = reader_.recv_bytes();
        answered = true;
      } catch (const EOFError&) {
      }
    }
    if (answered) {
      try {
        (void)proc_.join(std::chrono::seconds(1));  // it is exiting; else the reaper collects it later
      } catch (...) {
      }
    } else {
      std::optional<ExitStatus> st;
      try {
        proc_.join();
        st = proc_.exit_status();
      } catch (...) {
      }
      const std::string how = st ? st->to_string() : std::string("ended (status unknown)");
      outcome_.error = std::make_exception_ptr(WorkerLost("async child " + proc_.name() + " (pid " + std::to_string(pid_) +
                                                              ") died before answering: " + how,
                                                          st ? st->exitcode() : -1));
    }
    reader_.close();
    done_.store(true, std::memory_order_release);
    return true;
  }

  std::timed_mutex m_;
  std::atomic<bool> done_{false};
  Process proc_;
  Connection reader_;
  pid_t pid_ = 0;
  ChunkOutcome outcome_;
};

}  // namespace

std::shared_ptr<ResultSource> launch_async(Process&& p, Connection reader, Connection writer) {
  p.start();
  writer.close();
  return std::make_shared<AsyncSource>(std::move(p), std::move(reader));
}

}  // namespace mproc::detail

namespace mproc {

namespace {
PoolOptions with_processes(unsigned processes) {
  PoolOptions o;
  o.processes = processes;
  return o;
}
}  // namespace

Pool::Pool(unsigned processes) : Pool(with_processes(processes)) {}

Pool::Pool(PoolOptions options) {
  auto core = std::make_shared<detail::PoolCore>(std::move(options));
  try {
    core->start();
  } catch (...) {
    core->terminate();
    throw;
  }
  core_ = std::move(core);
}

Pool::Pool(Pool&&) noexcept = default;

Pool& Pool::operator=(Pool&& o) noexcept {
  if (this != &o) {
    Pool dying(std::move(*this));
    core_ = std::move(o.core_);
  }
  return *this;
}

Pool::~Pool() {
  if (!core_) return;
  if (::getpid() != core_->creator) {
    // A copy of the parent's Pool in a forked child: inert. Its thread and workers are the parent's.
    new std::shared_ptr<detail::PoolCore>(std::move(core_));
    return;
  }
  try {
    core_->terminate();
    core_->join();
  } catch (...) {
  }
}

detail::PoolCore& Pool::core(const char* what) const { return detail::checked(core_, what); }

void Pool::close() { core("close").close(); }
void Pool::terminate() { core("terminate").terminate(); }
void Pool::join() { core("join").join(); }

}  // namespace mproc
