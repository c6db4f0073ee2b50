// QueueCore: the process-local side of a queue handle (the per-process close flag) around the shared
// ring.
#include <unistd.h>

#include <atomic>

#include "mproc/detail/queue_core.hpp"
#include "mproc/error.hpp"
#include "posix/fd.hpp"
#include "runtime.hpp"
#include "shm/ring.hpp"

namespace mproc::detail {

struct QueueCore::Impl {
  Impl(std::size_t maxsize, std::size_t cap) : ring(cap, maxsize) {}
  shm::Ring ring;
  // close() is per process (Python's semantics): the pid that closed it. A child forked later has
  // another pid, so it is not closed there.
  std::atomic<pid_t> closed_by{0};
};

QueueCore::QueueCore(std::size_t maxsize, std::size_t capacity_bytes)
    : impl_(std::make_unique<Impl>(maxsize, capacity_bytes)) {}
QueueCore::~QueueCore() = default;

void QueueCore::put(std::span<const std::byte> record, bool block, std::optional<std::chrono::nanoseconds> timeout) {
  if (closed()) throw UsageError("Queue::put: queue is closed in this process");
  posix::Deadline d(block ? timeout : std::optional<std::chrono::nanoseconds>(std::chrono::nanoseconds::zero()));
  if (!impl_->ring.put(record, d)) throw Full();
}

std::vector<std::byte> QueueCore::get(bool block, std::optional<std::chrono::nanoseconds> timeout) {
  posix::Deadline d(block ? timeout : std::optional<std::chrono::nanoseconds>(std::chrono::nanoseconds::zero()));
  auto rec = impl_->ring.get(d);
  if (!rec) throw Empty();
  return std::move(*rec);
}

std::size_t QueueCore::qsize() const noexcept { return impl_->ring.qsize(); }
std::size_t QueueCore::maxsize() const noexcept { return impl_->ring.maxsize(); }
void QueueCore::close() noexcept { impl_->closed_by.store(current_pid()); }
bool QueueCore::closed() const noexcept { return impl_->closed_by.load() == current_pid(); }

void QueueCore::task_done() {
  if (!impl_->ring.task_done()) throw UsageError("JoinableQueue::task_done: called more times than items were put");
}

void QueueCore::join() { impl_->ring.join(posix::Deadline(std::nullopt)); }

}  // namespace mproc::detail
