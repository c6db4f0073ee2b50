// tests/test_shared.cpp — Value, Array and SharedMemory (API.md §11) across real processes: locked
// increments, zero-fill and visibility, named blocks in /dev/shm (mode, O_EXCL, ownership checks,
// unlink). Every named block a test creates is unlinked in a ScopeExit, so the leak guard in main.cpp
// (nothing new may be left in /dev/shm) holds also when a check fails half-way.
#include "catch.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

using mproc::Array;
using mproc::Process;
using mproc::SharedMemory;
using mproc::UsageError;
using mproc::Value;
namespace t = mproc_test;
using namespace std::chrono_literals;

namespace {

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("child check failed: ") + what);
}

void join_ok(Process& p) {
  REQUIRE(p.join(60s));
  CHECK(p.exitcode() == 0);
}

// A name no other test run uses: pid and a counter.
std::string test_name(const char* tag) {
  static int n = 0;
  return "mproc_test_" + std::string(tag) + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
}

// Unlinks /dev/shm/<name> if it exists (cleanup in failure paths).
void shm_cleanup(const std::string& name) noexcept { ::shm_unlink(("/" + name).c_str()); }

mode_t shm_mode(const std::string& name) {
  struct stat st {};
  REQUIRE(::stat(("/dev/shm/" + name).c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// The errno a call threw as std::system_error; 0 if it threw nothing, -1 for another exception.
template <class F>
int thrown_errno(F f, std::string* what = nullptr) {
  try {
    f();
  } catch (const std::system_error& e) {
    if (what) *what = e.what();
    return e.code().value();
  } catch (...) {
    return -1;
  }
  return 0;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct Point {
  int x;
  double y;
  char tag[8];
};

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Value
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Value: 4 processes x 10000 locked increments give exactly 40000", "[shared]") {
  Value<int> counter(0);
  std::vector<Process> ps;
  t::ScopeExit cleanup([&] { t::kill_and_join(ps); });
  for (int k = 0; k < 4; ++k) {
    ps.emplace_back(
        [](Value<int> c) {
          for (int i = 0; i < 10000; ++i) {
            std::lock_guard g(c.get_lock());
            c.store(c.load() + 1);  // the holder's own load/store do not re-take the lock
          }
        },
        counter);
    ps.back().start();
  }
  for (auto& p : ps) join_ok(p);
  CHECK(counter.load() == 40000);
}

TEST_CASE("Value: init - load and store - raw - a struct value - get_lock without a lock throws", "[shared]") {
  Value<double> d(2.5);
  CHECK(d.load() == 2.5);
  d.store(-1.0);
  CHECK(d.raw() == -1.0);
  CHECK(d.get_lock().try_acquire());  // a real lock, shared by the copies
  Value<double> copy = d;
  CHECK_FALSE(copy.get_lock().try_acquire());
  CHECK(copy.load() == -1.0);  // the holder thread reads without re-locking
  d.get_lock().release();

  Value<Point> pt(Point{1, 2.0, "abc"});
  Process p([](Value<Point> v) {
    Point q = v.load();
    check(q.x == 1 && q.y == 2.0 && std::strcmp(q.tag, "abc") == 0, "initial struct seen in the child");
    q.x = 7;
    std::strcpy(q.tag, "xyz");
    v.store(q);
  }, pt);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  CHECK(pt.load().x == 7);
  CHECK(std::string(pt.load().tag) == "xyz");

  Value<long> raw(5, false);
  CHECK(raw.load() == 5);
  raw.store(6);
  CHECK(raw.raw() == 6);
  CHECK_THROWS_AS(raw.get_lock(), UsageError);
  Value<int> zero;
  CHECK(zero.load() == 0);
}

// ---------------------------------------------------------------------------------------------------
// Array
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Array: zero-filled - a child's writes are visible in the parent", "[shared]") {
  Array<long> a(1000);
  CHECK(a.size() == 1000);
  bool all_zero = true;
  for (long v : a.span()) all_zero = all_zero && v == 0;
  CHECK(all_zero);

  Process p([](Array<long> arr) {
    for (std::size_t i = 0; i < arr.size(); ++i) arr[i] = static_cast<long>(i * i);
  }, a);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  bool all_written = true;
  for (std::size_t i = 0; i < a.size(); ++i) all_written = all_written && a[i] == static_cast<long>(i * i);
  CHECK(all_written);
}

TEST_CASE("Array: from a span - with an init value - at() - get_lock", "[shared]") {
  std::vector<int> v{3, 1, 4, 1, 5};
  Array<int> a{std::span<const int>(v)};
  CHECK(a.size() == 5);
  CHECK(std::vector<int>(a.begin(), a.end()) == v);
  CHECK(a.at(4) == 5);
  CHECK_THROWS_AS(a.at(5), std::out_of_range);
  CHECK(a.get_lock().try_acquire());
  a.get_lock().release();

  Array<double> filled(4, 1.5, false);
  CHECK(filled.span()[3] == 1.5);
  CHECK_THROWS_AS(filled.get_lock(), UsageError);
  Array<char> empty(0);
  CHECK(empty.size() == 0);
  CHECK(empty.span().empty());
}

// ---------------------------------------------------------------------------------------------------
// SharedMemory
// ---------------------------------------------------------------------------------------------------

TEST_CASE("SharedMemory: anonymous - shared with a forked child - close()", "[shared]") {
  SharedMemory shm(4096);
  CHECK(shm.size() == 4096);
  CHECK(shm.name().empty());
  CHECK(shm.buf()[100] == std::byte{0});
  Process p([](SharedMemory s) { s.buf()[100] = std::byte{42}; }, shm);
  t::ScopeExit cleanup([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  CHECK(shm.buf()[100] == std::byte{42});
  CHECK_THROWS_AS(shm.unlink(), UsageError);
  SharedMemory copy = shm;
  shm.close();
  CHECK_THROWS_AS(copy.buf(), UsageError);  // close() unmaps for every copy in this process
  CHECK(copy.size() == 4096);
  shm.close();  // a second close does nothing
  CHECK_THROWS_AS(SharedMemory(0), UsageError);
}

TEST_CASE("SharedMemory: create under umask 0 gives a /dev/shm entry of mode 0600", "[shared]") {
  const std::string name = test_name("mode");
  t::ScopeExit cleanup([&] { shm_cleanup(name); });
  const mode_t old = ::umask(0);
  t::ScopeExit restore([&] { ::umask(old); });
  SharedMemory shm = SharedMemory::create(name, 1000);
  CHECK(shm.name() == name);
  CHECK(shm.size() == 1000);
  CHECK(std::filesystem::exists("/dev/shm/" + name));
  CHECK(shm_mode(name) == 0600);
  shm.unlink();

  // And under a umask that would remove the owner's write bit: still 0600.
  ::umask(0277);
  const std::string name2 = test_name("mode");
  t::ScopeExit cleanup2([&] { shm_cleanup(name2); });
  SharedMemory shm2 = SharedMemory::create(name2, 10);
  CHECK(shm_mode(name2) == 0600);
  shm2.unlink();
}

TEST_CASE("SharedMemory: open from another process sees the data - unlink removes the name", "[shared]") {
  const std::string name = test_name("open");
  t::ScopeExit cleanup([&] { shm_cleanup(name); });
  SharedMemory shm = SharedMemory::create(name, 64);
  const char msg[] = "hello by name";
  std::memcpy(shm.buf().data(), msg, sizeof msg);

  // The child opens the block by name only (no inherited mapping involved) and answers in it.
  Process p([](std::string n) {
    SharedMemory s = SharedMemory::open(n);
    check(s.size() == 64, "size taken from the object");
    check(std::strcmp(reinterpret_cast<const char*>(s.buf().data()), "hello by name") == 0, "data seen");
    std::memcpy(s.buf().data() + 32, "answer", 7);
    s.close();
  }, name);
  t::ScopeExit kill([&] { t::kill_and_join(p); });
  p.start();
  join_ok(p);
  CHECK(std::string(reinterpret_cast<const char*>(shm.buf().data()) + 32) == "answer");

  SharedMemory again = SharedMemory::open(name);  // a second mapping of the same block
  CHECK(std::string(reinterpret_cast<const char*>(again.buf().data())) == "hello by name");
  shm.unlink();
  CHECK_FALSE(std::filesystem::exists("/dev/shm/" + name));
  // The mappings outlive the name.
  CHECK(std::string(reinterpret_cast<const char*>(again.buf().data()) + 32) == "answer");
  CHECK(thrown_errno([&] { shm.unlink(); }) == ENOENT);
}

TEST_CASE("SharedMemory: open of a missing name and create of an existing one throw clear errors", "[shared]") {
  const std::string name = test_name("errors");
  t::ScopeExit cleanup([&] { shm_cleanup(name); });
  std::string what;
  CHECK(thrown_errno([&] { SharedMemory::open(name); }, &what) == ENOENT);
  CHECK(contains(what, name));

  SharedMemory shm = SharedMemory::create(name, 16);
  shm.buf()[0] = std::byte{7};
  CHECK(thrown_errno([&] { SharedMemory::create(name, 32); }, &what) == EEXIST);
  CHECK(contains(what, name));
  CHECK(shm.buf()[0] == std::byte{7});  // the failed create touched nothing
  CHECK(SharedMemory::open(name).size() == 16);
  shm.unlink();

  CHECK_THROWS_AS(SharedMemory::create("a/b", 16), UsageError);
  CHECK_THROWS_AS(SharedMemory::create("..", 16), UsageError);
  CHECK_THROWS_AS(SharedMemory::create(name, 0), UsageError);
  CHECK_THROWS_AS(SharedMemory::open(std::string(300, 'x')), UsageError);
}

TEST_CASE("SharedMemory: a name pre-created by someone else with mode 0666 is refused on open", "[shared]") {
  const std::string name = test_name("planted");
  t::ScopeExit cleanup([&] { shm_cleanup(name); });
  {
    // Someone pre-creates the name, readable and writable by everybody, with data in it.
    const mode_t old = ::umask(0);
    int fd = ::shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    ::umask(old);
    REQUIRE(fd >= 0);
    t::Fd owner(fd);
    REQUIRE(::ftruncate(fd, 4096) == 0);
  }
  REQUIRE(shm_mode(name) == 0666);
  std::string what;
  CHECK(thrown_errno([&] { SharedMemory::open(name); }, &what) == EACCES);
  CHECK(contains(what, name));
  CHECK(contains(what, "0666"));
  // create() refuses it too (O_EXCL), rather than adopting it.
  CHECK(thrown_errno([&] { SharedMemory::create(name, 4096); }) == EEXIST);

  // Owned by another user, even with mode 0600 (root can hand the object to nobody to show it).
  if (::geteuid() == 0) {
    REQUIRE(::chmod(("/dev/shm/" + name).c_str(), 0600) == 0);
    REQUIRE(::chown(("/dev/shm/" + name).c_str(), 65534, 65534) == 0);
    CHECK(thrown_errno([&] { SharedMemory::open(name); }, &what) == EACCES);
    CHECK(contains(what, "owned by uid 65534"));
  }
}

TEST_CASE("SharedMemory: an empty name generates one with 64 random bits", "[shared]") {
  SharedMemory a = SharedMemory::create("", 128);
  t::ScopeExit cleanup_a([&] { shm_cleanup(a.name()); });
  SharedMemory b = SharedMemory::create("", 128);
  t::ScopeExit cleanup_b([&] { shm_cleanup(b.name()); });
  CHECK(a.name() != b.name());
  REQUIRE(a.name().size() == std::string("mproc_").size() + 16);
  CHECK(a.name().rfind("mproc_", 0) == 0);
  CHECK(a.name().find_first_not_of("0123456789abcdef", 6) == std::string::npos);
  CHECK(shm_mode(a.name()) == 0600);
  a.unlink();
  b.unlink();
}
