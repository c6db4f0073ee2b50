// tests/pool_compile_fail.cpp — must NOT compile (except case 0): a Pool task must be a function pointer,
// a captureless lambda or a default-constructible function object type, because the workers are forked
// before the task exists and only its type can travel. Anything else must fail with a static_assert
// whose message says why and points to mproc::async (which forks per call, so captures are fine there).
//
// tests/codec_compile_fail.cmake compiles this file once per case (-DMPROC_CASE=N, syntax only) and checks
// that the compiler fails and prints "captureless lambda" and "mproc::async". Case 0 is the control: the
// same file and flags with valid code, so the other cases cannot fail for an unrelated reason.
#include <mproc/mproc.hpp>  // Pool and mproc::async are reachable from the umbrella header

#include <string>
#include <tuple>
#include <vector>

namespace user {
int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
struct Square {  // default-constructible: fine
  int operator()(int x) const { return x * x; }
};
struct Scale {  // state set by a constructor: no default constructor, so it cannot be rebuilt in a worker
  explicit Scale(int k) : k_(k) {}
  int operator()(int x) const { return x * k_; }
  int k_;
};
}  // namespace user

#ifndef MPROC_CASE
#define MPROC_CASE 0
#endif

int main() {
  mproc::Pool pool(1);
  const std::vector<int> in{1, 2, 3};
  const std::vector<std::tuple<int, int>> pairs{{1, 2}};
  [[maybe_unused]] int k = 3;
#if MPROC_CASE == 0
  // Every allowed form, through every entry point; and mproc::async with a capture.
  auto a = pool.map(user::square, in);
  auto b = pool.map([](int x) { return x + 1; }, in, 1);
  auto c = pool.map(user::Square{}, in);
  auto d = pool.map_async(&user::square, in).get();
  auto e = pool.apply(user::add, 1, 2);
  auto f = pool.apply_async([](int x) { return x; }, 1).get();
  auto g = pool.starmap(user::add, pairs);
  int sum = 0;
  for (int v : pool.imap(user::Square{}, in)) sum += v;
  for (int v : pool.imap_unordered([](int x) { return x; }, in)) sum += v;
  auto h = mproc::async([k](int x) { return x * k; }, 2).get();
  return static_cast<int>(a.size() + b.size() + c.size() + d.size() + g.size()) + e + f + sum + h;
#elif MPROC_CASE == 1
  // The acceptance case: a capturing lambda passed to map.
  auto v = pool.map([k](int x) { return x * k; }, in);
  return static_cast<int>(v.size());
#elif MPROC_CASE == 2
  // A by-reference capture passed to apply_async.
  auto r = pool.apply_async([&k](int x) { return x + k; }, 1);
  return r.get();
#elif MPROC_CASE == 3
  // A capturing lambda passed to imap.
  int sum = 0;
  for (int v : pool.imap([k](int x) { return x * k; }, in)) sum += v;
  return sum;
#elif MPROC_CASE == 4
  // A function object without a default constructor, passed to apply.
  return pool.apply(user::Scale(3), 2);
#elif MPROC_CASE == 5
  // A capturing lambda passed to starmap.
  auto v = pool.starmap([k](int a, int b) { return a + b + k; }, pairs);
  return static_cast<int>(v.size());
#endif
}
