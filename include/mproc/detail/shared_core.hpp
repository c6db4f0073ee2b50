// mproc/detail/shared_core.hpp — the non-template core of Value<T> and Array<T>: a block of zero-filled
// anonymous shared memory (src/shared.cpp). Not part of the public API; the templates need to see it.
#pragma once

#include <cstddef>
#include <memory>

#include "mproc/export.hpp"

namespace mproc::detail {

class MPROC_API SharedBlock {
 public:
  /// Map max(bytes, 1) bytes of zero-filled MAP_SHARED|MAP_ANONYMOUS memory, page-aligned.
  /// std::system_error if the mapping fails.
  explicit SharedBlock(std::size_t bytes);
  ~SharedBlock();
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  void* data() const noexcept { return data_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  void* data_;
};

}  // namespace mproc::detail
