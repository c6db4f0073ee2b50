// mproc/detail/queue_core.hpp — the non-template core of Queue<T>: byte records through the shared
// ring (src/shm/ring.cpp). Not part of the public API; Queue<T> needs to see it.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "mproc/export.hpp"

namespace mproc::detail {

class MPROC_API QueueCore {
 public:
  QueueCore(std::size_t maxsize, std::size_t capacity_bytes);
  ~QueueCore();
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  /// block=false: never wait. timeout nullopt: wait forever. Throws Full, UsageError after close().
  void put(std::span<const std::byte> record, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    put(record, {}, block, timeout);
  }
  /// As put(record) for the record `first` followed by `second`, each copied straight into the ring.
  void put(std::span<const std::byte> first, std::span<const std::byte> second, bool block,
           std::optional<std::chrono::nanoseconds> timeout);
  /// Throws Empty. The record's bytes, in this thread's receive buffer: valid until this thread's next
  /// get on any queue.
  std::span<const std::byte> get(bool block, std::optional<std::chrono::nanoseconds> timeout);
  /// This thread's encode buffer for put (cleared by the caller, shrunk by put past a few MiB).
  static std::vector<std::byte>& put_buffer() noexcept;
  std::size_t qsize() const noexcept;
  std::size_t maxsize() const noexcept;
  void close() noexcept;
  bool closed() const noexcept;
  void task_done();
  void join();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::detail
