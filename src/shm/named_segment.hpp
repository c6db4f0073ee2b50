// src/shm/named_segment.hpp — named POSIX shared memory (/dev/shm/<name>), for SharedMemory.
//
// Plain shm_open rather than Boost.Interprocess's shared_memory_object: creation must be exactly
// O_CREAT|O_EXCL|O_CLOEXEC with mode 0600 made independent of the umask (fchmod), and opening must
// fstat the object to check its owner, mode and size before mapping it; both are simpler to get right,
// and to read, on the system calls themselves.
#pragma once

#include <cstddef>
#include <string>

namespace mproc::detail::shm {

/// A mapping of a named shared memory object. The fd is closed once mapped: the mapping keeps the
/// object alive, and no descriptor is held. Move-only; the destructor unmaps (never unlinks).
class NamedSegment {
 public:
  /// shm_open(O_CREAT|O_EXCL|O_CLOEXEC, 0600), fchmod 0600, ftruncate, mmap. On any failure the new name
  /// is unlinked again. std::system_error (EEXIST if the name exists) naming the object.
  static NamedSegment create(const std::string& name, std::size_t size);
  /// shm_open(O_RDWR|O_CLOEXEC), fstat checks, mmap of the whole object. std::system_error: ENOENT
  /// missing; EACCES another owner, or group/other permission bits; EINVAL empty or not a regular file.
  static NamedSegment open(const std::string& name);
  /// shm_unlink. std::system_error (ENOENT if already gone).
  static void unlink(const std::string& name);

  NamedSegment(NamedSegment&& o) noexcept;
  NamedSegment& operator=(NamedSegment&&) = delete;
  NamedSegment(const NamedSegment&) = delete;
  ~NamedSegment();
  void* data() const noexcept { return addr_; }
  std::size_t size() const noexcept { return size_; }

 private:
  NamedSegment(void* addr, std::size_t size) noexcept : addr_(addr), size_(size) {}
  void* addr_;
  std::size_t size_;
};

/// prefix + 16 hex digits from getrandom (64 random bits). std::system_error if getrandom fails.
std::string random_name(const std::string& prefix);

}  // namespace mproc::detail::shm
