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

namespace {

// Per-thread buffers for the bytes of a record on their way in and out. Reusing them keeps an item
// from costing an allocation (and a zero-fill) per put and get; for big items it also avoids page
// faults on freshly mapped memory, which dominate a 1 MiB item on a VM (25 µs a page here). Past
// kKeepBytes a buffer is given back after use, so one 64 MiB item does not pin 64 MiB per thread.
constexpr std::size_t kKeepBytes = std::size_t{4} << 20;
thread_local std::vector<std::byte> t_put_buffer;
thread_local std::vector<std::byte> t_get_buffer;

void release_if_big(std::vector<std::byte>& buf) noexcept {
  if (buf.capacity() > kKeepBytes) std::vector<std::byte>().swap(buf);
}

}  // namespace

std::vector<std::byte>& QueueCore::put_buffer() noexcept { return t_put_buffer; }

void QueueCore::put(std::span<const std::byte> first, std::span<const std::byte> second, bool block,
                    std::optional<std::chrono::nanoseconds> timeout) {
  struct Release {
    ~Release() { release_if_big(t_put_buffer); }
  } release;
  if (closed()) throw UsageError("Queue::put: queue is closed in this process");
  posix::Deadline d(block ? timeout : std::optional<std::chrono::nanoseconds>(std::chrono::nanoseconds::zero()));
  if (!impl_->ring.put(first, second, d)) throw Full();
}

std::span<const std::byte> QueueCore::get(bool block, std::optional<std::chrono::nanoseconds> timeout) {
  // The previous record of this thread has been decoded by now: a big buffer can go.
  release_if_big(t_get_buffer);
  posix::Deadline d(block ? timeout : std::optional<std::chrono::nanoseconds>(std::chrono::nanoseconds::zero()));
  auto n = impl_->ring.get(t_get_buffer, d);
  if (!n) throw Empty();
  return {t_get_buffer.data(), *n};
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
