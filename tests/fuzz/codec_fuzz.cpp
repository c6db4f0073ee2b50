// tests/fuzz/codec_fuzz.cpp — libFuzzer harness for the codec (mproc/codec.hpp).
//
// The first input byte picks a target type, the rest is decoded as that type. The properties checked:
//   * decoding is total: it returns a value or throws mproc::CodecError, nothing else (an out-of-bounds
//     read, undefined behaviour or a leak is caught by ASan/UBSan in the fuzz build);
//   * round trip: a value that decoded re-encodes to bytes that decode to the same value, encoded_size
//     predicts their length, and for types with one encoding per value (everything but unordered
//     containers) they are exactly the input bytes.
// Any violation calls std::abort(), which libFuzzer reports as a crash with the input saved.
//
// Built two ways: with clang -fsanitize=fuzzer,address,undefined as `codec_fuzz` (scripts/fuzz), and
// with the normal compiler, linked to replay_main.cpp, as `codec_fuzz_replay`, which ctest runs over the
// seed corpus in tests/fuzz/corpus/codec. `codec_fuzz_replay --write-seeds DIR` regenerates the seeds.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mproc/codec.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace codec_fuzz {

enum class Kind : std::uint8_t { a, b, c };
struct Point {
  double x;
  double y;
  bool operator==(const Point&) const = default;
};
struct Flagged {
  std::int32_t id;
  bool on;
  Kind kind;
  char tag[3];
  bool operator==(const Flagged&) const = default;
};
struct Job {
  std::string name;
  std::vector<std::int64_t> data;
  std::optional<Kind> kind;
  std::map<std::string, std::vector<std::variant<std::int32_t, std::string, Point, std::monostate>>> attrs;
  bool operator==(const Job&) const = default;
};
struct Node {
  std::int32_t value = 0;
  std::vector<Node> kids;
  bool operator==(const Node&) const = default;
};
struct Empty {
  bool operator==(const Empty&) const = default;
};

}  // namespace codec_fuzz

MPROC_CODEC(codec_fuzz::Job, name, data, kind, attrs);
MPROC_CODEC(codec_fuzz::Node, value, kids);

namespace codec_fuzz {

using T0 = Job;
using T1 = Node;
using T2 = std::tuple<bool, std::optional<std::uint16_t>, std::vector<bool>, std::set<std::int8_t>, Kind,
                      std::array<Flagged, 2>, std::chrono::milliseconds>;
using T3 = std::vector<std::pair<std::string, std::variant<std::monostate, Point, std::vector<Empty>, Node>>>;
using T4 = std::unordered_map<std::uint16_t, std::vector<std::optional<std::string>>>;  // not canonical
using T5 = std::map<std::int32_t, std::tuple<std::u16string, std::vector<Point>, std::array<bool, 3>>>;
inline constexpr unsigned kTypes = 6;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "codec_fuzz: property violated: %s\n", what);
  std::abort();
}

// Values compared through their encodings where a type may hold NaN (NaN != NaN): for canonical types
// equal encodings mean equal values.
template <class T, bool Canonical>
void check(std::span<const std::byte> in) {
  T v;
  try {
    v = mproc::decode<T>(in);
  } catch (const mproc::CodecError&) {
    return;
  }
  const std::vector<std::byte> again = mproc::encode(v);
  if (mproc::encoded_size(v) != again.size()) violated("encoded_size differs from the encoding's size");
  if constexpr (Canonical) {
    if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) {
      violated("a canonical type re-encoded to different bytes");
    }
  }
  T w;
  try {
    w = mproc::decode<T>(again);
  } catch (const mproc::CodecError&) {
    violated("the re-encoding of a decoded value does not decode");
  }
  if constexpr (Canonical) {
    if (mproc::encode(w) != again) violated("round trip changed the value");
  } else {
    if (!(w == v)) violated("round trip changed the value");
  }
}

void run(unsigned selector, std::span<const std::byte> in) {
  switch (selector % kTypes) {
    case 0:
      return check<T0, true>(in);
    case 1:
      return check<T1, true>(in);
    case 2:
      return check<T2, true>(in);
    case 3:
      return check<T3, true>(in);
    case 4:
      return check<T4, false>(in);
    default:
      return check<T5, true>(in);
  }
}

template <class T>
void write_seed(const std::string& dir, unsigned selector, const char* name, const T& value) {
  std::vector<std::byte> b{static_cast<std::byte>(selector)};
  mproc::encode_append(b, value);
  std::ofstream f(dir + "/" + std::to_string(selector) + "-" + name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) violated("cannot write a seed file");
}

}  // namespace codec_fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  codec_fuzz::run(data[0],
                  std::span<const std::byte>(reinterpret_cast<const std::byte*>(data) + 1, size - 1));
  return 0;
}

/// Writes the seed corpus: small valid encodings of each target type, prefixed by its selector byte.
void mproc_fuzz_write_seeds(const char* dir);
void mproc_fuzz_write_seeds(const char* dir) {
  using namespace codec_fuzz;
  Job job{"job",
          {1, -2, 3},
          Kind::b,
          {{"k", {std::int32_t{7}, std::string("s"), Point{1, 2}, std::monostate{}}}}};
  write_seed(dir, 0, "empty", Job{});
  write_seed(dir, 0, "job", job);
  Node tree{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}};
  write_seed(dir, 1, "leaf", Node{});
  write_seed(dir, 1, "tree", tree);
  write_seed(dir, 2, "zero", T2{});
  write_seed(dir, 2, "mixed",
             T2{true,
                std::uint16_t{300},
                {true, false, true, true, false, false, true, false, true},
                {-1, 5},
                Kind::c,
                {Flagged{1, true, Kind::a, {'a', 'b', 'c'}}, Flagged{}},
                std::chrono::milliseconds(9)});
  write_seed(dir, 3, "empty", T3{});
  write_seed(dir, 3, "pairs",
             T3{{"m", std::monostate{}}, {"p", Point{0.5, 1}}, {"e", std::vector<Empty>(3)}, {"n", tree}});
  write_seed(dir, 4, "map", T4{{1, {std::nullopt, std::string("x")}}, {2, {}}});
  write_seed(dir, 5, "map", T5{{-1, {u"ab", {Point{1, 1}}, {true, false, true}}}, {4, {}}});
}
