// tests/fuzz/replay_main.cpp — runs a libFuzzer harness without libFuzzer, built with the normal compiler
// (linked to each harness: codec_fuzz_replay, connection_fuzz_replay, ring_fuzz_replay).
//
//   <harness>_replay PATH...            every file (directories: every file in them, sorted) is passed
//                                       to LLVMFuzzerTestOneInput, then each of its strict prefixes
//   <harness>_replay --write-seeds DIR  write the seed corpus into DIR (the harness knows its seeds:
//                                       it defines mproc_fuzz_write_seeds)
//
// Exits 0 when every input ran without the harness aborting; 2 on a usage error or when no input was
// found (a wrong path must not pass as an empty, successful run).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
void mproc_fuzz_write_seeds(const char* dir);

namespace {

std::size_t replay_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  const std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::uint8_t> data(raw.begin(), raw.end());
  // The whole input, then every strict prefix (truncation is the commonest corruption).
  LLVMFuzzerTestOneInput(data.data(), data.size());
  for (std::size_t n = 0; n < data.size(); ++n) {
    std::vector<std::uint8_t> prefix(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    LLVMFuzzerTestOneInput(prefix.data(), prefix.size());
  }
  return 1 + data.size();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-seeds") {
    std::filesystem::create_directories(argv[2]);
    mproc_fuzz_write_seeds(argv[2]);
    std::printf("seeds written to %s\n", argv[2]);
    return 0;
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH... | --write-seeds DIR\n", argv[0]);
    return 2;
  }
  std::size_t files = 0, runs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    std::vector<std::filesystem::path> paths;
    if (std::filesystem::is_directory(arg)) {
      for (const auto& e : std::filesystem::directory_iterator(arg)) {
        if (e.is_regular_file()) paths.push_back(e.path());
      }
      std::sort(paths.begin(), paths.end());
    } else if (std::filesystem::is_regular_file(arg)) {
      paths.push_back(arg);
    } else {
      std::fprintf(stderr, "%s: no such file or directory\n", argv[i]);
      return 2;
    }
    for (const auto& p : paths) {
      runs += replay_file(p);
      ++files;
    }
  }
  if (files == 0) {
    std::fprintf(stderr, "no inputs found\n");
    return 2;
  }
  std::printf("replayed %zu inputs (%zu runs with their prefixes)\n", files, runs);
  return 0;
}
