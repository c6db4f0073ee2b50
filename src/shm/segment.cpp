#include "shm/segment.hpp"

#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cerrno>
#include <string>
#include <system_error>

namespace mproc::detail::shm {

struct AnonymousSegment::Impl {
  boost::interprocess::mapped_region region;
};

AnonymousSegment::AnonymousSegment(std::size_t size) {
  try {
    impl_ = std::make_unique<Impl>(Impl{boost::interprocess::anonymous_shared_memory(size)});
  } catch (const boost::interprocess::interprocess_exception& e) {
    int err = e.get_native_error();
    throw std::system_error(err ? err : ENOMEM, std::system_category(),
                            "mmap(MAP_SHARED|MAP_ANONYMOUS, " + std::to_string(size) + " bytes)");
  }
}

AnonymousSegment::~AnonymousSegment() = default;
void* AnonymousSegment::data() const noexcept { return impl_->region.get_address(); }
std::size_t AnonymousSegment::size() const noexcept { return impl_->region.get_size(); }

}  // namespace mproc::detail::shm
