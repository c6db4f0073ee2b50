// mproc/detail/pool_core.hpp — the non-template half of Pool, AsyncResult and async (src/pool.cpp), and
// the type erasure the templates in mproc/pool.hpp use to reach it. Not part of the public API.
//
// Wire protocol between the pool thread and a worker (one SOCK_SEQPACKET Connection per worker; see
// docs/design/pool.md):
//   parent -> worker  Run:  u8 1, u64 chunk_id, u64 invoker, u64 fn, u64 count, then `count` encoded
//                           arguments (the header is run_header_size bytes)
//                     Exit: u8 2
//                     Batch: u8 4, then per Run message: u64 length, the Run message (run in order)
//   worker -> parent  Done: u8 3, u64 chunk_id, then per task a record: u8 1 + encoded result, or
//                           u8 0 + std::string type name + std::string message
// An async child sends one task record over a one-way pipe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/export.hpp"

namespace mproc {
class Process;
class Connection;
}  // namespace mproc

namespace mproc::detail {

/// Runs `count` tasks of one chunk in a worker: decodes each task's arguments from `in`, calls the task
/// function (`fn` is its address when it is a function pointer, else 0 and the function object is
/// default-constructed), and appends one task record per task to `out`. Instantiated per (F, argument
/// type) in mproc/pool.hpp; the worker is a fork of the parent, so the address is valid there.
using Invoker = void (*)(std::uintptr_t fn, ByteReader& in, std::size_t count, ByteWriter& out);

inline constexpr std::size_t run_header_size = 1 + 8 * 4;

/// Inside a catch block: append a failed task record for the exception in flight (its demangled
/// dynamic type and what()).
MPROC_API void write_current_exception(ByteWriter& out);
/// Read the status byte of a task record. True: the encoded result follows. False: the record was a
/// failure; err holds the RemoteError (or CodecError for a malformed record).
MPROC_API bool read_task_status(ByteReader& in, std::exception_ptr& err);
/// The rest of a failed task record whose status byte (not 1) was already read: err gets the
/// RemoteError (or CodecError for a malformed record).
MPROC_API void read_task_failure(ByteReader& in, std::byte status, std::exception_ptr& err);
/// read_task_status with the success test inline: a map of a million tasks reads a million of these.
inline bool task_succeeded(ByteReader& in, std::exception_ptr& err) {
  const std::byte b = in.read_byte();
  if (b == std::byte{1}) return true;
  read_task_failure(in, b, err);
  return false;
}

/// What came back for one chunk: its task records (from `offset` in `bytes`), or an error that every task
/// of the chunk failed with (WorkerLost, TimeoutError, "pool terminated").
struct ChunkOutcome {
  std::vector<std::byte> bytes;
  std::size_t offset = 0;
  std::size_t count = 0;
  std::exception_ptr error;
};

/// What an AsyncResult waits on: a pool job or an async child. Thread-safe.
class MPROC_API ResultSource {
 public:
  virtual ~ResultSource();
  /// Block until complete or timeout (nullopt: forever). True when complete.
  virtual bool wait(std::optional<std::chrono::nanoseconds> timeout) = 0;
  /// Complete? Never blocks for long.
  virtual bool ready() = 0;
  /// After completion: the outcomes, one per chunk, in input order.
  virtual std::size_t chunk_count() = 0;
  virtual ChunkOutcome& chunk(std::size_t i) = 0;
};

class PoolCore;

/// One apply_async / map_async / imap call: its chunks' outcomes as they arrive. The pool thread
/// delivers; the user's threads wait. Its mutex is a leaf lock (nothing else is locked under it).
class MPROC_API Job final : public ResultSource {
 public:
  explicit Job(bool stream) : stream_(stream) {}
  bool wait(std::optional<std::chrono::nanoseconds> timeout) override;
  bool ready() override;
  std::size_t chunk_count() override;
  ChunkOutcome& chunk(std::size_t i) override;

  /// No more chunks will be submitted.
  void finish_input();
  /// Tasks finished so far; waits (at most timeout) until that exceeds `seen` or the job completes.
  std::size_t wait_progress(std::size_t seen, std::optional<std::chrono::nanoseconds> timeout);
  std::size_t total_tasks();
  /// imap: take the outcome of chunk `seq` (ordered) or of the next chunk to complete (seq nullopt),
  /// waiting at most timeout; nullopt on timeout. The outcome is removed from the job.
  std::optional<ChunkOutcome> take(std::optional<std::uint64_t> seq, std::optional<std::chrono::nanoseconds> timeout);
  /// The consumer is gone: chunks not yet dispatched are dropped, late outcomes are discarded.
  void cancel() noexcept;
  bool cancelled() const noexcept;

  // Used by the pool (src/pool.cpp).
  std::uint64_t add_chunk(std::size_t count);  // returns the chunk's sequence number in this job
  void deliver(std::uint64_t seq, ChunkOutcome&& outcome);

 private:
  bool complete_locked() const { return input_done_ && completed_ == submitted_; }
  const bool stream_;
  std::mutex m_;
  std::condition_variable cv_;
  std::map<std::uint64_t, ChunkOutcome> outcomes_;
  std::deque<std::uint64_t> completion_order_;  // stream jobs: seqs in the order they completed
  std::uint64_t submitted_ = 0, completed_ = 0;
  std::size_t tasks_total_ = 0, tasks_done_ = 0;
  int progress_waiters_ = 0;  // threads in wait_progress: deliver wakes them for every chunk
  bool input_done_ = false;
  std::atomic<bool> cancelled_{false};
};

/// A fresh Run message with its header (chunk id and count are filled in by pool_submit); the typed
/// side appends the encoded arguments.
MPROC_API std::vector<std::byte> run_message(Invoker invoker, std::uintptr_t fn);
/// New job. UsageError if the pool is closed or terminated, or when called in a forked child.
MPROC_API std::shared_ptr<Job> pool_new_job(PoolCore& core, bool stream, const char* what);
/// Queue one chunk of `count` tasks of job. If the pool no longer runs, the chunk fails at once.
MPROC_API void pool_submit(PoolCore& core, const std::shared_ptr<Job>& job, std::vector<std::byte>&& msg,
                           std::size_t count);
MPROC_API unsigned pool_processes(const PoolCore& core) noexcept;

/// Start p (an async child whose target writes one task record to `writer`) and return the source an
/// AsyncResult waits on. The parent's copy of writer is closed.
MPROC_API std::shared_ptr<ResultSource> launch_async(Process&& p, Connection reader, Connection writer);

}  // namespace mproc::detail
