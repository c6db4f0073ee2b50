// src/shm/segment.hpp — shared memory segments.
//
// AnonymousSegment: MAP_SHARED|MAP_ANONYMOUS memory from Boost.Interprocess's
// anonymous_shared_memory. It has no name, so nothing ever appears in /dev/shm, and the kernel frees
// it when the last process mapping it unmaps or dies (SIGKILL included). It is shared with children
// forked after its creation, which is exactly the lifetime mproc's handles promise.
// Boost stays inside src/: the public headers never see it.
#pragma once

#include <cstddef>
#include <memory>

namespace mproc::detail::shm {

class AnonymousSegment {
 public:
  /// Map size bytes, zero-filled. std::system_error(ENOMEM, ...) when the mapping fails.
  explicit AnonymousSegment(std::size_t size);
  ~AnonymousSegment();
  AnonymousSegment(const AnonymousSegment&) = delete;
  AnonymousSegment& operator=(const AnonymousSegment&) = delete;
  void* data() const noexcept;
  std::size_t size() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mproc::detail::shm
