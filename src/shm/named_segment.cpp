#include "shm/named_segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <system_error>

#include "posix/fd.hpp"

namespace mproc::detail::shm {

namespace {

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

void* map_shared(int fd, std::size_t size, const std::string& what) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail(errno, what + ": mmap(" + std::to_string(size) + " bytes)");
  return p;
}

std::string octal_mode(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%03o", static_cast<unsigned>(m & 07777));
  return buf;
}

}  // namespace

NamedSegment NamedSegment::create(const std::string& name, std::size_t size) {
  const std::string path = "/" + name;
  const std::string what = "SharedMemory::create(\"" + name + "\") of /dev/shm/" + name;
  // O_EXCL: never adopt an object someone else made under this name. glibc adds O_NOFOLLOW.
  posix::UniqueFd fd(::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR));
  if (!fd) fail(errno, what + ": shm_open(O_CREAT|O_EXCL)");
  // From here on the name is ours: remove it again if anything fails.
  try {
    // The umask may have cleared bits of 0600 (umask 0177 gives 0400, useless to the peer); the mode
    // must not depend on it, so set it explicitly.
    if (::fchmod(fd.get(), S_IRUSR | S_IWUSR) != 0) fail(errno, what + ": fchmod(0600)");
    while (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
      if (errno != EINTR) fail(errno, what + ": ftruncate(" + std::to_string(size) + ")");
    return NamedSegment(map_shared(fd.get(), size, what), size);
  } catch (...) {
    ::shm_unlink(path.c_str());
    throw;
  }
}

NamedSegment NamedSegment::open(const std::string& name) {
  const std::string path = "/" + name;
  const std::string what = "SharedMemory::open(\"" + name + "\") of /dev/shm/" + name;
  posix::UniqueFd fd(::shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0));
  if (!fd) fail(errno, what + ": shm_open");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail(errno, what + ": fstat");
  if (!S_ISREG(st.st_mode)) fail(EINVAL, what + ": not a shared memory object");
  // Refuse what another user could have planted or can read and change: a block we share must be ours
  // alone (create() makes it 0600). Root is no exception: it is exactly the process to protect.
  if (st.st_uid != ::geteuid())
    fail(EACCES, what + ": owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " +
                     std::to_string(::geteuid()) + "); refusing a block another user controls");
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    fail(EACCES, what + ": mode " + octal_mode(st.st_mode) +
                     " gives group or others access; refusing it (create() makes blocks 0600)");
  if (st.st_size <= 0) fail(EINVAL, what + ": size 0 (its creator has not sized it yet)");
  const auto size = static_cast<std::size_t>(st.st_size);
  return NamedSegment(map_shared(fd.get(), size, what), size);
}

void NamedSegment::unlink(const std::string& name) {
  if (::shm_unlink(("/" + name).c_str()) != 0)
    fail(errno, "SharedMemory::unlink(\"" + name + "\"): shm_unlink of /dev/shm/" + name);
}

NamedSegment::NamedSegment(NamedSegment&& o) noexcept : addr_(o.addr_), size_(o.size_) {
  o.addr_ = nullptr;
  o.size_ = 0;
}

NamedSegment::~NamedSegment() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

std::string random_name(const std::string& prefix) {
  std::uint64_t bits = 0;
  auto* p = reinterpret_cast<unsigned char*>(&bits);
  std::size_t got = 0;
  while (got < sizeof bits) {
    ssize_t k = ::getrandom(p + got, sizeof bits - got, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      posix::throw_errno("getrandom");
    }
    got += static_cast<std::size_t>(k);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(bits));
  return prefix + hex;
}

}  // namespace mproc::detail::shm
