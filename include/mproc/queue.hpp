// mproc/queue.hpp — Python's multiprocessing.Queue, SimpleQueue and JoinableQueue, on shared memory.
//
//     mproc::Queue<std::string> q;                 // create before starting the processes that use it
//     mproc::Process p([](mproc::Queue<std::string> q) { q.put("hello"); }, q);
//     p.start();
//     std::string s = q.get();                      // "hello"
//     p.join();
//
// A Queue is a handle: copies (also into children forked after construction, passed by value) refer
// to the same queue. Items travel through the codec (mproc/codec.hpp) into a ring of shared memory
// (anonymous: nothing appears in /dev/shm, and the memory is gone when the last process holding a
// handle ends, SIGKILL included). Multi-producer, multi-consumer; FIFO per producer; each item reaches
// exactly one consumer, whole or not at all. Items of any size pass, also larger than the ring (they
// stream through it), so unlike boost::interprocess::message_queue there is no maximum message size.
//
// Blocking: put() blocks while the queue holds maxsize items or the ring has no room; get() while it is
// empty. The timed forms wait at most the timeout (monotonic clock, EINTR-proof) and throw Full/Empty.
// A get() that has begun receiving a streamed (larger than the ring) item receives it to its end while
// its producer lives, even past its timeout.
//
// Crash safety (beyond Python): a producer or consumer killed at any instant, holding a lock, mid-put
// or mid-get, never blocks the others forever and never makes them see a torn item: the partial item
// is dropped. An item a consumer was killed while taking is lost with it (it had been taken).
//
// Threads: a handle may be used from several threads at once. Fork: create the queue before the fork;
// a Queue created in a child is shared only with that child's own children.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "mproc/codec.hpp"
#include "mproc/detail/queue_core.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/error.hpp"

namespace mproc {

/// Options of Queue, SimpleQueue and JoinableQueue.
struct QueueOptions {
  std::size_t capacity_bytes = 1 << 20;  ///< size of the shared ring; items larger than it still pass
};

/// Python's multiprocessing.Queue: items of type T between processes, any number of producers and
/// consumers, FIFO per producer, on a ring in shared memory (see the top of this header). A handle:
/// copies refer to the same queue.
template <class T>
class Queue {
 public:
  /// maxsize 0: no item limit. std::system_error if the shared memory cannot be mapped.
  explicit Queue(std::size_t maxsize = 0, QueueOptions opts = {})
      : core_(std::make_shared<detail::QueueCore>(maxsize, opts.capacity_bytes)) {}

  /// Block while full. UsageError after close() in this process.
  void put(const T& item) { put_impl(item, true, std::nullopt); }
  /// Full if there is no room within timeout.
  template <class R, class P>
  void put(const T& item, std::chrono::duration<R, P> timeout) {
    put_impl(item, true, detail::to_nanoseconds(timeout));
  }
  /// Full if there is no room now.
  void put_nowait(const T& item) { put_impl(item, false, std::nullopt); }

  /// Block until an item arrives. CodecError if its bytes do not decode as T (the item is consumed).
  T get() { return decode<T>(core_->get(true, std::nullopt)); }
  /// Empty if no item arrives within timeout.
  template <class R, class P>
  T get(std::chrono::duration<R, P> timeout) {
    return decode<T>(core_->get(true, detail::to_nanoseconds(timeout)));
  }
  /// Empty if no item is there now.
  T get_nowait() { return decode<T>(core_->get(false, std::nullopt)); }

  /// Items in the queue now (approximate while others put and get, as in Python).
  std::size_t qsize() const { return core_->qsize(); }
  /// qsize() == 0 (as approximate as qsize()).
  bool empty() const { return core_->qsize() == 0; }
  /// True if the queue holds maxsize items (never without a maxsize), as approximate as qsize(). A put
  /// may also block when full() is false: while the ring has no room.
  bool full() const { return core_->maxsize() != 0 && core_->qsize() >= core_->maxsize(); }

  /// This process puts no more through any handle of this queue (puts throw UsageError); gets still
  /// work; other processes are unaffected. A second close() does nothing.
  void close() { core_->close(); }

 protected:
  /// The queue's shared state (an implementation detail that JoinableQueue builds on).
  std::shared_ptr<detail::QueueCore> core_;

 private:
  // Where the built-in codec's encoding is the object's own bytes (an int, a trivially copyable
  // struct), or an 8-byte count followed by the elements' bytes (std::vector and std::basic_string of
  // such elements), those bytes go straight into the ring: no encoding pass, no intermediate buffer
  // (for a 64-byte vector that pass and its extra copy were most of put's own work). Only built-in
  // codecs: no user code runs while the ring's lock is held. Anything else is encoded first, into this
  // thread's reusable buffer: no allocation (and, for big items, no fresh pages to fault in) per put
  // once the buffer has grown.
  void put_impl(const T& item, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    detail::check_top_level_encode<T>();
    if constexpr (detail::memcpy_v<T>) {
      core_->put(std::as_bytes(std::span<const T, 1>(&item, 1)), {}, block, timeout);
    } else if constexpr (detail::counted_run_v<T>) {
      const std::uint64_t n = item.size();  // what ByteWriter::write_u64 writes: host byte order
      core_->put(std::as_bytes(std::span<const std::uint64_t, 1>(&n, 1)), std::as_bytes(std::span(item.data(), item.size())),
                 block, timeout);
    } else {
      auto& buf = detail::QueueCore::put_buffer();
      buf.clear();
      encode_append(buf, item);
      core_->put(buf, block, timeout);
    }
  }
};

/// Python's SimpleQueue: unbounded, put/get/empty/close.
template <class T>
class SimpleQueue {
 public:
  /// std::system_error if the shared memory cannot be mapped.
  explicit SimpleQueue(QueueOptions opts = {}) : q_(0, opts) {}
  /// As Queue::put: blocks while the ring has no room. UsageError after close() in this process.
  void put(const T& item) { q_.put(item); }
  /// As Queue::get: blocks until an item arrives. CodecError if it does not decode as T.
  T get() { return q_.get(); }
  /// As Queue::empty.
  bool empty() const { return q_.empty(); }
  /// As Queue::close: this process puts no more; gets still work.
  void close() { q_.close(); }

 private:
  Queue<T> q_;
};

/// Queue plus Python's task accounting: every put() adds a task, task_done() finishes one, join() waits
/// until all are done.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  using Queue<T>::Queue;
  /// UsageError if called more times than items were put.
  void task_done() { this->core_->task_done(); }
  /// Block until every item ever put has had its task_done().
  void join() { this->core_->join(); }
};

}  // namespace mproc
