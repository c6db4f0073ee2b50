// Value/Array's shared block and SharedMemory (mproc/shared.hpp). Both sit on src/shm: anonymous
// segments for what forked children inherit, named segments for what unrelated programs open by name.
#include "mproc/shared.hpp"

#include <limits.h>

#include <cerrno>
#include <optional>
#include <string>
#include <system_error>

#include "shm/named_segment.hpp"
#include "shm/segment.hpp"

namespace mproc {

namespace detail {

struct SharedBlock::Impl {
  explicit Impl(std::size_t bytes) : seg(bytes) {}
  shm::AnonymousSegment seg;
};

// A zero-byte Array still gets a (one-byte, so one-page) mapping: data() is then a valid pointer and
// the handle needs no special case.
SharedBlock::SharedBlock(std::size_t bytes)
    : impl_(std::make_unique<Impl>(bytes == 0 ? 1 : bytes)), data_(impl_->seg.data()) {}
SharedBlock::~SharedBlock() = default;

}  // namespace detail

struct SharedMemory::Impl {
  std::string name;
  std::size_t size = 0;
  // Exactly one is set until close().
  std::optional<detail::shm::AnonymousSegment> anon;
  std::optional<detail::shm::NamedSegment> named;
  std::byte* data = nullptr;
};

namespace {

// A name becomes the single path component /dev/shm/<name>. One leading '/' (the shm_open spelling) is
// tolerated and dropped.
std::string checked_name(std::string name, const char* what) {
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || name.size() > NAME_MAX)
    throw UsageError(std::string(what) + ": invalid name \"" + name +
                     "\" (a file name without '/', at most " + std::to_string(NAME_MAX) + " bytes)");
  return name;
}

}  // namespace

SharedMemory::SharedMemory(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

SharedMemory::SharedMemory(std::size_t size) : impl_(std::make_shared<Impl>()) {
  if (size == 0) throw UsageError("SharedMemory: size must be positive");
  impl_->anon.emplace(size);
  impl_->size = size;
  impl_->data = static_cast<std::byte*>(impl_->anon->data());
}

SharedMemory SharedMemory::create(std::string name, std::size_t size) {
  if (size == 0) throw UsageError("SharedMemory::create: size must be positive");
  auto impl = std::make_shared<Impl>();
  if (name.empty()) {
    // A generated name: 64 random bits make a collision (or a guess by someone planting a name first)
    // hopeless; O_EXCL catches the impossible anyway, so retry a few times on EEXIST.
    for (int attempt = 0;; ++attempt) {
      name = detail::shm::random_name("mproc_");
      try {
        impl->named.emplace(detail::shm::NamedSegment::create(name, size));
        break;
      } catch (const std::system_error& e) {
        if (e.code().value() != EEXIST || attempt == 7) throw;
      }
    }
  } else {
    name = checked_name(std::move(name), "SharedMemory::create");
    impl->named.emplace(detail::shm::NamedSegment::create(name, size));
  }
  impl->name = std::move(name);
  impl->size = size;
  impl->data = static_cast<std::byte*>(impl->named->data());
  return SharedMemory(std::move(impl));
}

SharedMemory SharedMemory::open(std::string name) {
  name = checked_name(std::move(name), "SharedMemory::open");
  auto impl = std::make_shared<Impl>();
  impl->named.emplace(detail::shm::NamedSegment::open(name));
  impl->name = std::move(name);
  impl->size = impl->named->size();
  impl->data = static_cast<std::byte*>(impl->named->data());
  return SharedMemory(std::move(impl));
}

std::span<std::byte> SharedMemory::buf() {
  if (impl_->data == nullptr)
    throw UsageError("SharedMemory::buf: the block" + (impl_->name.empty() ? std::string() : " \"" + impl_->name + "\"") +
                     " is closed in this process");
  return {impl_->data, impl_->size};
}

std::size_t SharedMemory::size() const noexcept { return impl_->size; }
const std::string& SharedMemory::name() const noexcept { return impl_->name; }

void SharedMemory::close() noexcept {
  impl_->data = nullptr;
  impl_->anon.reset();
  impl_->named.reset();
}

void SharedMemory::unlink() {
  if (impl_->name.empty()) throw UsageError("SharedMemory::unlink: an anonymous block has no name");
  detail::shm::NamedSegment::unlink(impl_->name);
}

}  // namespace mproc
