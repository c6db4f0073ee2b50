// bench/bench_util.hpp — what every benchmark needs to compare itself with Python in the same run.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

/// Whether an executable `program` is in a directory of $PATH (an empty entry means ".").
inline bool on_path(const char* program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  const std::string dirs = path;
  std::size_t begin = 0;
  while (begin <= dirs.size()) {
    std::size_t end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    // Built with append, not `dir + "/" + program`: GCC 12 at -O3 gives a false -Wrestrict on that.
    std::string candidate = end > begin ? dirs.substr(begin, end - begin) : std::string(".");
    candidate.append(1, '/').append(program);
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    begin = end + 1;
  }
  return false;
}

/// Runs `python3 -c '<script>' <args>` (the script must hold no single quote) and returns what it
/// printed, stdout and stderr together. Throws std::runtime_error, with the output, if it fails.
inline std::string run_python(const char* script, const std::string& args) {
  const std::string cmd = "python3 -c '" + std::string(script) + "' " + args + " 2>&1";
  std::fflush(nullptr);  // our buffered lines first, then Python's
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen python3 failed");
  std::string out;
  char buf[4096];
  std::size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, got);
  const int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error("python3 failed (status " + std::to_string(status) + "):\n" + out);
  return out;
}

/// Every number in text, in order (Python's figures, one or more per line).
inline std::vector<double> numbers(const std::string& text) {
  std::vector<double> values;
  const char* p = text.c_str();
  char* end = nullptr;
  for (double v = std::strtod(p, &end); end != p; v = std::strtod(p, &end)) {
    values.push_back(v);
    p = end;
  }
  return values;
}

}  // namespace bench
