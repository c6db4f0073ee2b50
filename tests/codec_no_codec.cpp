// tests/codec_no_codec.cpp — must NOT compile (except case 0): the codec's compile-time errors.
//
// tests/codec_compile_fail.cmake compiles this file once per case (-DMPROC_CASE=N) and checks that the
// compiler fails and says what the user must do. Case 0 is the control: the same file, the same flags,
// code that is valid, so a failure of the others cannot come from a wrong include path or flag.
#include <mproc/codec.hpp>
#include <string>
#include <vector>

namespace user {
// Not an aggregate (it has a constructor): no built-in codec.
class NoCodecType {
 public:
  NoCodecType() = default;
  explicit NoCodecType(int v) : v_(v) {}
  int v_ = 0;
};
// An aggregate, but not trivially copyable: needs MPROC_CODEC.
struct NotTriviallyCopyable {
  std::string name;
  int n = 0;
};
// Trivially copyable, but a pointer field.
struct HoldsPointer {
  int n;
  const char* name;
};
// No fixed underlying type.
enum Unscoped { red, green };
// With a codec: the control.
struct Fine {
  std::string name;
  std::vector<int> xs;
};
}  // namespace user

MPROC_CODEC(user::Fine, name, xs);

#ifndef MPROC_CASE
#define MPROC_CASE 0
#endif

int main() {
#if MPROC_CASE == 0
  const auto b = mproc::encode(user::Fine{"ok", {1, 2}});
  return mproc::decode<user::Fine>(b).xs.size() == 2 ? 0 : 1;
#elif MPROC_CASE == 1
  return static_cast<int>(mproc::encode(user::NoCodecType(1)).size());
#elif MPROC_CASE == 2
  const std::vector<std::byte> b;
  return mproc::decode<std::vector<user::NoCodecType>>(b).empty() ? 0 : 1;
#elif MPROC_CASE == 3
  return static_cast<int>(mproc::encode(user::NotTriviallyCopyable{}).size());
#elif MPROC_CASE == 4
  return static_cast<int>(mproc::encode(user::HoldsPointer{1, "x"}).size());
#elif MPROC_CASE == 5
  return static_cast<int>(mproc::encode(user::red).size());
#endif
}
