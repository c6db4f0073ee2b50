// tests/test_codec.cpp — the codec (mproc/codec.hpp): round trips of every built-in type and of user
// types, the wire format byte by byte, the fast path, and totality: malformed, truncated, random and
// mutated input, and lengths that claim more than the input holds, must throw CodecError and nothing
// else (the ASan+UBSan build also proves no out-of-bounds read and no undefined behaviour).
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mproc/codec.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "catch.hpp"
#include "test_util.hpp"


namespace codec_test {

enum class Kind : std::uint8_t { a, b, c };
enum Legacy : int { legacy_x = 1, legacy_y = -7 };  // unscoped, fixed underlying type
enum class Switch : bool { off, on };

struct Point {  // bitwise: copied as its 16 bytes, a vector of it is one memcpy
  double x;
  double y;
  bool operator==(const Point&) const = default;
};
struct Padded {  // bitwise with 4 bytes of padding: still one memcpy (padding travels as it is)
  std::int32_t a;
  std::int64_t b;
  bool operator==(const Padded&) const = default;
};
struct Flagged {  // trivially copyable but with a bool: encoded field by field, the bool validated
  std::int32_t id;
  bool on;
  Kind kind;
  char tag[3];
  bool operator==(const Flagged&) const = default;
};
struct Timed {  // fields of class type with explicit constructors, a nested aggregate, an array of them
  std::chrono::milliseconds d;
  std::chrono::system_clock::time_point t;
  Point p[2];
  std::optional<std::int16_t> o;
  bool operator==(const Timed&) const = default;
};
struct Empty {
  bool operator==(const Empty&) const = default;
};

struct Job {  // MPROC_CODEC: a struct that is not trivially copyable
  std::string name;
  std::vector<double> data;
  std::optional<Kind> kind;
  std::map<std::string, std::vector<std::variant<std::int32_t, std::string, Point>>> attrs;
  int not_sent = 0;  // left out of MPROC_CODEC
  bool operator==(const Job&) const = default;
};
struct Node {  // recursive through a vector
  std::int32_t value = 0;
  std::vector<Node> kids;
  bool operator==(const Node&) const = default;
};
struct Wrapper {  // a user type holding user types
  Job job;
  Node tree;
  std::vector<Flagged> flags;
  bool operator==(const Wrapper&) const = default;
};

struct Money {  // a hand-written codec that validates
  std::int64_t cents = 0;
  bool operator==(const Money&) const = default;
};
struct Unit {  // a hand-written codec whose encoding is empty and that declares no min_size
  bool operator==(const Unit&) const = default;
};
struct Thrower {  // not trivially copyable, throws from a constructor: can leave a variant valueless
  Thrower() = default;
  explicit Thrower(int) { throw 1; }
  std::string s;
};

}  // namespace codec_test

MPROC_CODEC(codec_test::Job, name, data, kind, attrs);
MPROC_CODEC(codec_test::Node, value, kids);
MPROC_CODEC(codec_test::Wrapper, job, tree, flags);
MPROC_CODEC(codec_test::Thrower, s);

template <>
struct mproc::codec<codec_test::Money> {
  static void encode(mproc::ByteWriter& w, const codec_test::Money& m) { mproc::encode_to(w, m.cents); }
  static void decode(mproc::ByteReader& r, codec_test::Money& m) {
    mproc::decode_from(r, m.cents);
    if (m.cents < 0) r.fail("negative money");
  }
  static constexpr std::size_t min_size = 8;
  static constexpr bool fixed_size = true;
};
template <>
struct mproc::codec<codec_test::Unit> {
  static void encode(mproc::ByteWriter&, const codec_test::Unit&) {}
  static void decode(mproc::ByteReader&, codec_test::Unit&) {}
};

namespace {

using namespace codec_test;
using Bytes = std::vector<std::byte>;

Bytes bytes(std::initializer_list<int> xs) {
  Bytes b;
  for (int x : xs) b.push_back(static_cast<std::byte>(x));
  return b;
}
void put_u64(Bytes& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void put_u32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

/// encode, encoded_size, encode_into and encode_append agree, and decode gives the value back.
template <class T>
Bytes round_trip(const T& v) {
  const Bytes b = mproc::encode(v);
  REQUIRE(mproc::encoded_size(v) == b.size());
  Bytes exact(b.size());
  REQUIRE(mproc::encode_into(std::span<std::byte>(exact), v) == b.size());
  REQUIRE(exact == b);
  Bytes appended = bytes({0xAB});
  mproc::encode_append(appended, v);
  REQUIRE(appended.size() == b.size() + 1);
  REQUIRE(std::equal(b.begin(), b.end(), appended.begin() + 1));
  const T back = mproc::decode<T>(b);
  REQUIRE(back == v);
  return b;
}

template <class T>
void round_trip_limits() {
  round_trip(T{});
  round_trip(std::numeric_limits<T>::min());
  round_trip(std::numeric_limits<T>::max());
  round_trip(std::numeric_limits<T>::lowest());
  round_trip(static_cast<T>(1));
  const Bytes b = mproc::encode(std::numeric_limits<T>::max());
  REQUIRE(b.size() == sizeof(T));
}

template <class T>
void require_codec_error(const Bytes& b) {
  REQUIRE_THROWS_AS(mproc::decode<T>(b), mproc::CodecError);
}

/// Every strict prefix of the encoding throws CodecError; so does the encoding plus one byte.
template <class T>
void every_prefix_throws(const T& v) {
  const Bytes b = mproc::encode(v);
  REQUIRE(mproc::decode<T>(b) == v);
  for (std::size_t n = 0; n < b.size(); ++n) {
    INFO("prefix of " << n << " of " << b.size() << " bytes");
    REQUIRE_THROWS_AS(mproc::decode<T>(std::span<const std::byte>(b.data(), n)), mproc::CodecError);
  }
  Bytes longer = b;
  longer.push_back(std::byte{0});
  REQUIRE_THROWS_AS(mproc::decode<T>(longer), mproc::CodecError);
}

Job sample_job() {
  Job j;
  j.name = "resize \"cat.png\"";
  j.data = {1.5, -2.25, 1e300, 0.0};
  j.kind = Kind::c;
  j.attrs["size"] = {std::int32_t{640}, std::int32_t{480}};
  j.attrs["owner"] = {std::string("ana"), Point{1, 2}};
  j.attrs["none"] = {};
  return j;
}
Node sample_tree() {
  Node leaf{3, {}};
  Node mid{2, {leaf, leaf}};
  return Node{1, {mid, Node{4, {}}, mid}};
}
Wrapper sample_wrapper() {
  return Wrapper{sample_job(), sample_tree(), {Flagged{7, true, Kind::b, {'a', 'b', 'c'}}, Flagged{}}};
}

using MapOfVariants =
    std::map<std::string, std::vector<std::variant<std::int32_t, std::string, Point, std::monostate>>>;
using Mixed = std::tuple<bool, std::optional<std::uint16_t>, std::vector<bool>, std::set<std::int8_t>, Kind,
                         std::array<Flagged, 2>>;
using Unordered = std::vector<std::unordered_map<std::uint8_t, std::vector<Unit>>>;

MapOfVariants sample_map() {
  return {{"a", {std::int32_t{1}, std::string("x"), Point{0.5, -1}, std::monostate{}}},
          {"b", {}},
          {"", {std::string()}}};
}
Mixed sample_mixed() {
  return {true,
          std::uint16_t{513},
          std::vector<bool>{true, false, true, true, false, false, true, false, true},
          std::set<std::int8_t>{-3, 0, 9},
          Kind::b,
          std::array<Flagged, 2>{Flagged{1, true, Kind::a, {'x', 'y', 'z'}}, Flagged{}}};
}
Unordered sample_unordered() { return {{{1, {Unit{}, Unit{}}}, {200, {}}}, {}, {{0, {Unit{}}}}}; }

}  // namespace

TEST_CASE("codec: round trip of arithmetic types and bool and std::byte and enums", "[codec]") {
  round_trip_limits<char>();
  round_trip_limits<signed char>();
  round_trip_limits<unsigned char>();
  round_trip_limits<char8_t>();
  round_trip_limits<char16_t>();
  round_trip_limits<char32_t>();
  round_trip_limits<wchar_t>();
  round_trip_limits<short>();
  round_trip_limits<unsigned short>();
  round_trip_limits<int>();
  round_trip_limits<unsigned>();
  round_trip_limits<long>();
  round_trip_limits<unsigned long>();
  round_trip_limits<long long>();
  round_trip_limits<unsigned long long>();
  round_trip_limits<float>();
  round_trip_limits<double>();
  round_trip(3.25L);
  round_trip(std::numeric_limits<double>::infinity());
  round_trip(-0.0);
  // NaN compares unequal to itself: check its bits instead.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double nan_back = mproc::decode<double>(mproc::encode(nan));
  REQUIRE(std::memcmp(&nan, &nan_back, sizeof nan) == 0);

  round_trip(true);
  round_trip(false);
  REQUIRE(mproc::encode(true) == bytes({1}));
  round_trip(std::byte{0});
  round_trip(std::byte{0xff});
  round_trip(Kind::c);
  round_trip(static_cast<Kind>(200));  // any value of the underlying type is a valid Kind
  round_trip(legacy_y);
  round_trip(Switch::on);
  REQUIRE(mproc::encode(legacy_y).size() == sizeof(int));
}

TEST_CASE("codec: round trip of strings and sequences", "[codec]") {
  round_trip(std::string());
  round_trip(std::string("hello"));
  round_trip(std::string("a\0b\0", 4));
  round_trip(std::string(1 << 20, 'x'));
  round_trip(std::u16string(u"h\u00e9llo"));
  round_trip(std::u32string(U"\U0001F600"));
  round_trip(std::wstring(L"wide"));

  round_trip(std::vector<int>{});
  round_trip(std::vector<int>{1, -2, 3});
  round_trip(std::vector<std::string>{"", "a", std::string(300, 'z')});
  round_trip(std::vector<std::vector<std::uint8_t>>{{}, {1}, {2, 3}});
  round_trip(std::vector<std::byte>{std::byte{0}, std::byte{0x80}});
  for (std::size_t n = 0; n < 20; ++n) {
    std::vector<bool> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = (i * 7 + n) % 3 == 0;
    const Bytes b = round_trip(v);
    REQUIRE(b.size() == 8 + (n + 7) / 8);
  }
  round_trip(std::vector<bool>(1001, true));

  round_trip(std::array<int, 4>{1, 2, 3, 4});
  round_trip(std::array<std::string, 2>{"x", ""});
  round_trip(std::array<bool, 3>{true, false, true});
  round_trip(std::array<int, 0>{});
  REQUIRE(mproc::encode(std::array<int, 0>{}).empty());
}

TEST_CASE("codec: round trip of pair and tuple and optional and variant", "[codec]") {
  round_trip(std::pair<int, std::string>{7, "seven"});
  round_trip(std::pair<bool, std::pair<char, double>>{true, {'c', 2.5}});
  round_trip(std::tuple<>{});
  round_trip(std::tuple<int, std::string, std::vector<bool>>{1, "t", {true}});
  round_trip(std::optional<int>{});
  round_trip(std::optional<int>{5});
  round_trip(std::optional<std::string>{"s"});
  round_trip(std::optional<std::optional<int>>{std::optional<int>{}});
  using V = std::variant<std::monostate, int, std::string, std::vector<double>>;
  round_trip(V{});
  round_trip(V{42});
  round_trip(V{std::string("v")});
  round_trip(V{std::vector<double>{1, 2}});
  using Same = std::variant<int, int>;  // repeated alternatives are told apart by index
  round_trip(Same{std::in_place_index<1>, 9});
  REQUIRE(mproc::decode<Same>(mproc::encode(Same{std::in_place_index<1>, 9})).index() == 1);
}

TEST_CASE("codec: round trip of maps and sets and durations and time points", "[codec]") {
  round_trip(std::map<int, std::string>{});
  round_trip(std::map<int, std::string>{{3, "c"}, {1, "a"}, {2, "b"}});
  round_trip(std::map<std::string, int, std::greater<>>{{"a", 1}, {"b", 2}});  // its own order
  round_trip(std::unordered_map<std::string, std::vector<int>>{{"x", {1}}, {"y", {}}, {"z", {2, 3}}});
  round_trip(std::set<std::string>{"b", "a", "c"});
  round_trip(std::unordered_set<int>{5, 1, 3});
  round_trip(std::map<int, std::monostate>{{1, {}}, {2, {}}});  // zero-size values: each entry marked

  round_trip(std::chrono::nanoseconds(-123456789));
  round_trip(std::chrono::hours(7));
  round_trip(std::chrono::duration<double>(0.25));
  round_trip(std::chrono::duration<std::int8_t, std::milli>(-5));
  round_trip(std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)));
  round_trip(std::chrono::steady_clock::now());
  REQUIRE(mproc::encode(std::chrono::seconds(1)).size() == sizeof(std::chrono::seconds::rep));
}

TEST_CASE("codec: trivially copyable aggregates need no declaration", "[codec]") {
  STATIC_REQUIRE(mproc::detail::memcpy_v<Point>);
  STATIC_REQUIRE(mproc::detail::memcpy_v<Padded>);
  STATIC_REQUIRE(!mproc::detail::memcpy_v<Flagged>);  // has a bool: field by field
  STATIC_REQUIRE(mproc::detail::min_size_v<Flagged> == 4 + 1 + 1 + 3);
  STATIC_REQUIRE(mproc::detail::fixed_size_v<Flagged>);
  round_trip(Point{1.5, -2});
  round_trip(Padded{-1, 1LL << 40});
  round_trip(Flagged{-9, true, Kind::c, {'a', 'b', 'c'}});
  round_trip(Timed{std::chrono::milliseconds(5),
                   std::chrono::system_clock::time_point(std::chrono::hours(1)),
                   {Point{1, 2}, Point{3, 4}},
                   std::int16_t{-2}});
  round_trip(Empty{});
  REQUIRE(mproc::encode(Empty{}).empty());
  round_trip(std::vector<Empty>(1000));  // zero-size elements: one marker byte each
  REQUIRE(mproc::encode(std::vector<Empty>(1000)).size() == 8 + 1000);
  round_trip(std::vector<Flagged>{Flagged{1, false, Kind::a, {}}, Flagged{2, true, Kind::b, {'q', 0, 0}}});
  round_trip(std::array<Point, 3>{Point{1, 1}, Point{2, 2}, Point{3, 3}});
}

TEST_CASE("codec: contiguous runs of bitwise types are their memory and one copy each way", "[codec]") {
  // The format says so (and the decoder relies on it): header, then the elements' object representation.
  std::vector<Point> pts(1000);
  for (std::size_t i = 0; i < pts.size(); ++i)
    pts[i] = Point{static_cast<double>(i), -static_cast<double>(i)};
  const Bytes b = mproc::encode(pts);
  REQUIRE(b.size() == 8 + pts.size() * sizeof(Point));
  REQUIRE(std::memcmp(b.data() + 8, pts.data(), pts.size() * sizeof(Point)) == 0);
  REQUIRE(mproc::decode<std::vector<Point>>(b) == pts);

  const std::array<std::uint16_t, 3> arr{1, 2, 3};
  const Bytes ab = mproc::encode(arr);
  REQUIRE(ab.size() == sizeof arr);
  REQUIRE(std::memcmp(ab.data(), arr.data(), sizeof arr) == 0);
  STATIC_REQUIRE(mproc::detail::memcpy_v<std::array<Point, 4>>);
  STATIC_REQUIRE(mproc::detail::memcpy_v<std::chrono::nanoseconds>);
  STATIC_REQUIRE(!mproc::detail::memcpy_v<Money>);  // a user codec always wins over the raw path

  // 8 MiB of doubles: the fast path makes this take milliseconds even under ASan.
  std::vector<double> big(1 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  REQUIRE(mproc::decode<std::vector<double>>(mproc::encode(big)) == big);
}

TEST_CASE("codec: MPROC_CODEC structs with nesting and recursion", "[codec]") {
  round_trip(sample_job());
  round_trip(sample_tree());
  round_trip(sample_wrapper());
  round_trip(std::vector<Wrapper>{sample_wrapper(), Wrapper{}});
  round_trip(std::map<std::string, std::vector<std::variant<Job, Node, std::monostate>>>{
      {"jobs", {sample_job(), Job{}}}, {"trees", {sample_tree(), std::monostate{}}}});
  round_trip(
      std::unordered_map<int, std::optional<std::map<std::string, std::vector<std::variant<int, Point>>>>>{
          {1, std::nullopt},
          {2, std::map<std::string, std::vector<std::variant<int, Point>>>{{"p", {Point{1, 2}, 3}}}}});

  // Members not listed are not sent: they keep the value of the object decoded into.
  Job j = sample_job();
  j.not_sent = 99;
  const Job back = mproc::decode<Job>(mproc::encode(j));
  REQUIRE(back.not_sent == 0);
  REQUIRE(back.name == j.name);

  STATIC_REQUIRE(mproc::detail::min_size_v<Node> == 4 + 8);
  STATIC_REQUIRE(!mproc::detail::fixed_size_v<Node>);
}

TEST_CASE("codec: hand-written codecs with validation and zero-size encodings", "[codec]") {
  round_trip(Money{1234});
  round_trip(std::vector<Money>{Money{1}, Money{2}});
  REQUIRE(mproc::encode(std::vector<Money>{Money{1}, Money{2}}).size() == 8 + 2 * 8);
  Bytes neg;
  put_u64(neg, static_cast<std::uint64_t>(-5));
  REQUIRE_THROWS_AS(mproc::decode<Money>(neg), mproc::CodecError);

  // Unit encodes to nothing and declares no min_size: containers mark each element with a 0 byte, so
  // counts stay bounded by the bytes left; encoded_size measures it by a trial encoding.
  round_trip(Unit{});
  REQUIRE(mproc::encode(Unit{}).empty());
  round_trip(std::vector<Unit>(5));
  REQUIRE(mproc::encode(std::vector<Unit>(5)) == bytes({5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  Bytes bad_marker = mproc::encode(std::vector<Unit>(2));
  bad_marker.back() = std::byte{1};
  require_codec_error<std::vector<Unit>>(bad_marker);
}

TEST_CASE("codec: the wire format byte by byte", "[codec]") {
  REQUIRE(mproc::encode(std::uint32_t{0x01020304}) == bytes({4, 3, 2, 1}));
  REQUIRE(mproc::encode(std::int16_t{-2}) == bytes({0xfe, 0xff}));
  REQUIRE(mproc::encode(std::string("ab")) == bytes({2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'}));
  REQUIRE(mproc::encode(std::vector<std::uint8_t>{7, 8}) == bytes({2, 0, 0, 0, 0, 0, 0, 0, 7, 8}));
  REQUIRE(mproc::encode(std::optional<std::uint8_t>{}) == bytes({0}));
  REQUIRE(mproc::encode(std::optional<std::uint8_t>{9}) == bytes({1, 9}));
  REQUIRE(mproc::encode(std::variant<std::uint8_t, bool>{true}) == bytes({1, 0, 0, 0, 1}));
  REQUIRE(mproc::encode(std::pair<std::uint8_t, bool>{5, false}) == bytes({5, 0}));
  REQUIRE(mproc::encode(std::vector<bool>{true, false, true, true, false, false, false, false, true}) ==
          bytes({9, 0, 0, 0, 0, 0, 0, 0, 0x0d, 0x01}));
  REQUIRE(mproc::encode(std::map<std::uint8_t, bool>{{2, true}, {1, false}}) ==
          bytes({2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1}));
  REQUIRE(mproc::encode(Flagged{1, true, Kind::b, {'x', 'y', 'z'}}) ==
          bytes({1, 0, 0, 0, 1, 1, 'x', 'y', 'z'}));
  REQUIRE(mproc::encode(Node{5, {Node{6, {}}}}) ==
          bytes({5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST_CASE("codec: malformed input throws CodecError", "[codec]") {
  require_codec_error<bool>(bytes({2}));
  require_codec_error<Switch>(bytes({0xff}));
  require_codec_error<Flagged>(bytes({1, 0, 0, 0, 7, 1, 'x', 'y', 'z'}));  // the bool field is 7
  require_codec_error<std::optional<int>>(bytes({2, 0, 0, 0, 0}));
  require_codec_error<std::variant<int, bool>>(bytes({2, 0, 0, 0, 1}));  // index 2 of 2
  require_codec_error<std::variant<int, bool>>(bytes({0, 0, 0, 0x80, 1, 0, 0, 0}));
  // vector<bool> of 9 bits whose unused high bits are not 0.
  require_codec_error<std::vector<bool>>(bytes({9, 0, 0, 0, 0, 0, 0, 0, 0x0d, 0x03}));
  // Map keys out of order, and twice.
  require_codec_error<std::map<std::uint8_t, bool>>(bytes({2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 1}));
  require_codec_error<std::map<std::uint8_t, bool>>(bytes({2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1}));
  require_codec_error<std::set<std::uint8_t>>(bytes({2, 0, 0, 0, 0, 0, 0, 0, 4, 4}));
  require_codec_error<std::unordered_map<std::uint8_t, bool>>(bytes({2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1}));
  require_codec_error<std::unordered_set<std::uint8_t>>(bytes({2, 0, 0, 0, 0, 0, 0, 0, 4, 4}));
  // A string whose length is one more than the bytes there.
  require_codec_error<std::string>(bytes({3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'}));
  // Trailing bytes, and empty input.
  require_codec_error<std::uint16_t>(bytes({1, 2, 3}));
  require_codec_error<std::uint16_t>(Bytes{});
  require_codec_error<Empty>(bytes({0}));
  // A codec's own validation.
  Bytes neg;
  put_u64(neg, static_cast<std::uint64_t>(-1));
  require_codec_error<std::vector<Money>>([&] {
    Bytes b;
    put_u64(b, 1);
    b.insert(b.end(), neg.begin(), neg.end());
    return b;
  }());
  // The error says what went wrong.
  try {
    (void)mproc::decode<std::string>(bytes({3, 0, 0, 0, 0, 0, 0, 0, 'a'}));
    FAIL("no exception");
  } catch (const mproc::CodecError& e) {
    REQUIRE(std::string(e.what()).find("exceeds") != std::string::npos);
  }
}

TEST_CASE("codec: every strict prefix of an encoded nested value throws CodecError", "[codec]") {
  every_prefix_throws(sample_job());
  every_prefix_throws(sample_tree());
  every_prefix_throws(sample_wrapper());
  every_prefix_throws(sample_map());
  every_prefix_throws(sample_mixed());
  every_prefix_throws(sample_unordered());
  every_prefix_throws(std::vector<std::optional<std::string>>{std::nullopt, "x", ""});
  every_prefix_throws(std::tuple<Point, std::vector<Padded>, Timed>{Point{1, 2}, {Padded{1, 2}}, Timed{}});
}

TEST_CASE("codec: recursion depth is bounded", "[codec]") {
  // A chain of 200 nodes decodes (below max_decode_depth) ...
  Node chain{0, {}};
  for (int i = 1; i < 200; ++i) chain = Node{i, {std::move(chain)}};
  round_trip(chain);
  // ... and 100,000 nested one-child nodes (1.2 MB of input) throw instead of exhausting the stack.
  Bytes deep;
  for (int i = 0; i < 100000; ++i) {
    put_u32(deep, 0);
    put_u64(deep, 1);
  }
  put_u32(deep, 0);
  put_u64(deep, 0);
  require_codec_error<Node>(deep);
}

namespace {

// Counts of elements far beyond what the input holds: each must throw CodecError before allocating.
// Returns 0 when all do, or the number of the first case that did not.
int claim_huge_counts() noexcept {
  std::vector<std::uint64_t> counts = {1ULL << 60, ~0ULL, 1ULL << 32, 1ULL << 28, 1ULL << 20};
  for (std::size_t c = 0; c < counts.size(); ++c) {
    Bytes b;
    put_u64(b, counts[c]);
    for (int i = 0; i < 64; ++i) b.push_back(std::byte{0});  // a few bytes, far fewer than claimed
    auto expect = [&](auto tag) -> bool {
      using T = typename decltype(tag)::type;
      try {
        (void)mproc::decode<T>(b);
        return false;
      } catch (const mproc::CodecError&) {
        return true;
      } catch (...) {  // std::bad_alloc: it tried to allocate
        return false;
      }
    };
    const bool ok[] = {
        expect(std::type_identity<std::vector<std::uint64_t>>{}),
        expect(std::type_identity<std::vector<std::uint8_t>>{}),
        expect(std::type_identity<std::string>{}),
        expect(std::type_identity<std::u32string>{}),
        expect(std::type_identity<std::vector<bool>>{}),
        expect(std::type_identity<std::vector<std::string>>{}),
        expect(std::type_identity<std::vector<std::vector<int>>>{}),
        expect(std::type_identity<std::vector<Empty>>{}),
        expect(std::type_identity<std::vector<Unit>>{}),
        expect(std::type_identity<std::vector<std::monostate>>{}),
        expect(std::type_identity<std::vector<std::optional<std::array<char, 4096>>>>{}),
        expect(std::type_identity<std::map<int, int>>{}),
        expect(std::type_identity<std::map<std::monostate, std::tuple<>>>{}),
        expect(std::type_identity<std::unordered_map<std::string, int>>{}),
        expect(std::type_identity<std::set<std::uint8_t>>{}),
        expect(std::type_identity<std::unordered_set<std::uint64_t>>{}),
        expect(std::type_identity<Job>{}),
        expect(std::type_identity<Node>{}),
    };
    for (std::size_t i = 0; i < std::size(ok); ++i) {
      if (!ok[i]) return static_cast<int>(1 + c * 32 + i);
    }
  }
  return 0;
}

}  // namespace

TEST_CASE("codec: a length claiming 2^60 elements throws without allocating", "[codec]") {
#if MPROC_TEST_ASAN
  // RLIMIT_AS cannot be used under ASan (its shadow memory reserves terabytes of address space). Here a
  // decoder that tried to allocate what the counts claim would hit ASan's allocation-size limit and
  // abort the test, or at least take long; so: all throw CodecError, quickly.
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(claim_huge_counts() == 0);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
#else
  // In a child under a 512 MiB address-space limit: an allocation of what a count claims fails there.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = 512ULL << 20;
    if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(120);
    // The limit is in force: 1 GiB cannot be had.
    void* p = std::malloc(1ULL << 30);
    if (p != nullptr) ::_exit(121);
    ::_exit(claim_huge_counts());
  }
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  REQUIRE(r == pid);
  REQUIRE(WIFEXITED(status));
  INFO("child exit code " << WEXITSTATUS(status) << " (0: all threw CodecError; 120/121: rlimit)");
  REQUIRE(WEXITSTATUS(status) == 0);
#endif
}

namespace {

std::byte random_byte(std::mt19937_64& rng) {
  // Biased toward the values that make structure: 0, 1, small counts.
  switch (rng() % 4) {
    case 0:
    case 1:
      return std::byte{0};
    case 2:
      return static_cast<std::byte>(rng() % 4);
    default:
      return static_cast<std::byte>(rng() & 0xff);
  }
}

/// Decode bytes as T: either CodecError, or a value that re-encodes to the same value (and, for types
/// with one encoding per value, to the same bytes). Returns whether it decoded.
template <class T, bool Canonical>
bool decode_or_codec_error(const Bytes& in) {
  T v;
  try {
    v = mproc::decode<T>(in);
  } catch (const mproc::CodecError&) {
    return false;
  }
  const Bytes again = mproc::encode(v);
  REQUIRE(mproc::encoded_size(v) == again.size());
  if constexpr (Canonical) {
    REQUIRE(again == in);
  } else {
    REQUIRE(mproc::decode<T>(again) == v);
  }
  return true;
}

Bytes mutate(Bytes b, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    const std::size_t at = b.empty() ? 0 : rng() % b.size();
    switch (rng() % 6) {
      case 0:
        if (!b.empty()) b[at] ^= static_cast<std::byte>(1u << (rng() % 8));
        break;
      case 1:
        if (!b.empty()) b[at] = random_byte(rng);
        break;
      case 2:
        b.resize(at);
        break;
      case 3:
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), random_byte(rng));
        break;
      case 4:
        if (!b.empty()) b.erase(b.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      default:  // duplicate a chunk
        if (!b.empty()) {
          const std::size_t len = 1 + rng() % std::min<std::size_t>(16, b.size() - at);
          Bytes chunk(b.begin() + static_cast<std::ptrdiff_t>(at),
                      b.begin() + static_cast<std::ptrdiff_t>(at + len));
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
        }
    }
  }
  return b;
}

}  // namespace

TEST_CASE("codec: 200000 random and mutated byte strings decode or throw CodecError", "[codec]") {
  std::mt19937_64 rng(0x6d70726f63);  // fixed: a failure reproduces
  std::size_t decoded = 0;
  // 100,000 random strings of 0..64 bytes, into five nested types.
  for (int i = 0; i < 100000; ++i) {
    Bytes b(rng() % 65);
    for (auto& x : b) x = random_byte(rng);
    switch (i % 5) {
      case 0:
        decoded += decode_or_codec_error<MapOfVariants, true>(b);
        break;
      case 1:
        decoded += decode_or_codec_error<Mixed, true>(b);
        break;
      case 2:
        decoded += decode_or_codec_error<Wrapper, true>(b);
        break;
      case 3:
        decoded += decode_or_codec_error<Node, true>(b);
        break;
      default:
        decoded += decode_or_codec_error<Unordered, false>(b);
    }
  }
  // 100,000 mutations of valid encodings (these get past the counts and reach the inner checks).
  const Bytes seeds[] = {mproc::encode(sample_map()), mproc::encode(sample_mixed()),
                         mproc::encode(sample_wrapper()), mproc::encode(sample_tree()),
                         mproc::encode(sample_unordered())};
  std::size_t mutated_decoded = 0;
  for (int i = 0; i < 100000; ++i) {
    const int k = i % 5;
    const Bytes b = mutate(seeds[k], rng);
    bool ok = false;
    switch (k) {
      case 0:
        ok = decode_or_codec_error<MapOfVariants, true>(b);
        break;
      case 1:
        ok = decode_or_codec_error<Mixed, true>(b);
        break;
      case 2:
        ok = decode_or_codec_error<Wrapper, true>(b);
        break;
      case 3:
        ok = decode_or_codec_error<Node, true>(b);
        break;
      default:
        ok = decode_or_codec_error<Unordered, false>(b);
    }
    mutated_decoded += ok;
  }
  INFO("random decoded: " << decoded << ", mutated decoded: " << mutated_decoded);
  // Not vacuous: a good share of the mutated inputs still decode (and were checked above); about 4%.
  REQUIRE(mutated_decoded > 2000);
}

TEST_CASE("codec: writers append and fill fixed buffers and feed custom sinks", "[codec]") {
  const Wrapper w = sample_wrapper();
  const Bytes b = mproc::encode(w);

  // encode_into: exact size works, one byte less throws.
  Bytes small(b.size() - 1);
  REQUIRE_THROWS_AS(mproc::encode_into(std::span<std::byte>(small), w), mproc::CodecError);

  // A VectorWriter that is not committed leaves the vector as it was (also after an exception).
  Bytes out = bytes({1, 2, 3});
  {
    mproc::VectorWriter vw(out);
    mproc::encode_to(vw, w);
    REQUIRE(vw.written() == b.size());
  }
  REQUIRE(out == bytes({1, 2, 3}));
  std::variant<int, Thrower> valueless = 1;
  try {
    valueless.emplace<Thrower>(1);
  } catch (int) {
  }
  REQUIRE(valueless.valueless_by_exception());
  REQUIRE_THROWS_AS(mproc::encode_append(out, valueless), mproc::CodecError);
  REQUIRE(out == bytes({1, 2, 3}));

  // A custom sink that takes the bytes in chunks of at most 7, as a ring buffer might.
  class ChunkSink final : public mproc::ByteWriter {
   public:
    ChunkSink() {
      pos_ = window_;
      end_ = window_ + sizeof window_;
    }
    Bytes finish() {
      flush();
      return got_;
    }

   private:
    void flush() {
      got_.insert(got_.end(), window_, pos_);
      pos_ = window_;
    }
    void overflow(const std::byte* src, std::size_t n) override {
      flush();
      got_.insert(got_.end(), src, src + n);
    }
    std::byte window_[7];
    Bytes got_;
  };
  ChunkSink sink;
  mproc::encode_to(sink, w);
  REQUIRE(sink.finish() == b);

  // decode into an existing object reuses it; a ByteReader decodes several values in a row.
  Wrapper reused = sample_wrapper();
  mproc::decode(std::span<const std::byte>(mproc::encode(Wrapper{})), reused);
  REQUIRE(reused == Wrapper{});
  Bytes two = mproc::encode(std::string("first"));
  mproc::encode_append(two, 42);
  mproc::ByteReader r(two);
  std::string s;
  int n = 0;
  mproc::decode_from(r, s);
  mproc::decode_from(r, n);
  r.expect_end();
  REQUIRE(s == "first");
  REQUIRE(n == 42);
}
