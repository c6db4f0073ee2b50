// bench/bench_util.hpp — what every benchmark needs: to compare itself with Python in the same run, and
// to report each target of issue 8 as one machine-readable summary line (row() below) that
// ./scripts/bench gathers into the single table of bench/RESULTS.md.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
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

// ---- summary rows ------------------------------------------------------------------------------------

/// The median and min–max of a benchmark's repeats (n = how many: at least 5 by default everywhere).
struct Stats {
  double median = 0, min = 0, max = 0;
  std::size_t n = 0;
};

inline Stats stats(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return {v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2, v.front(), v.back(), v.size()};
}

/// A number with 3 significant digits (4 from 1000 up) and no exponent above 1e-3 (the table is read by
/// people): 1234, 123, 12.3, 1.23, 0.123, 0.00123.
inline std::string num(double v) {
  char b[48];
  const double a = v < 0 ? -v : v;
  std::snprintf(b, sizeof b, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : a >= 1 ? "%.2f" : "%.3g", v);
  return b;
}

/// A ratio with 2 decimals below 10 (1.24), fewer above (12.3, 123): how targets are written.
inline std::string ratio_text(double v) {
  char b[48];
  const double a = v < 0 ? -v : v;
  std::snprintf(b, sizeof b, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : "%.2f", v);
  return b;
}

/// "<median> <unit> (<min>–<max>, n=<repeats>)", every value multiplied by scale first (to change the
/// unit: seconds to ms, msgs/s to M msgs/s, ...).
inline std::string figure(const Stats& s, const std::string& unit, double scale = 1) {
  return num(s.median * scale) + " " + unit + " (" + num(s.min * scale) + "–" + num(s.max * scale) +
         ", n=" + std::to_string(s.n) + ")";
}

/// One target of issue 8 §3, as a line of the summary table:
///   figure    what is measured ("Queue 1→1, 8 B vs Boost");
///   mproc     mproc's figure, figure() of its repeats;
///   baseline  "<name>: <figure>", or "<name>: python3 not found" (then the ratio and verdict are n/a);
///   ratio     the number compared with the target, named by what it divides ("mproc/raw = 1.24×"), or,
///             for an absolute target (µs per task), mproc's median itself;
///   target    "mproc/raw ≤ 1.3×";
///   met       "met", "MISSED by p%" or "MISSED by k×" (the ratio must improve by p%, or k-fold, to meet
///             the target), or "n/a".
struct Row {
  std::string figure, mproc, baseline;
  std::optional<double> value;  // the ratio (or the absolute figure) compared with target; none: n/a
  std::string value_name;       // "mproc/raw"; empty for an absolute target
  std::string unit = "×";       // of value and target
  bool at_most = false;         // value ≤ target is met (else value ≥ target)
  double target = 1;
};

/// Prints `@row<TAB>figure<TAB>mproc<TAB>baseline<TAB>ratio<TAB>target<TAB>met` on stdout, the line
/// scripts/bench collects (it must hold no tab or newline of its own). The human-readable tables of each
/// benchmark stay as they are; these lines only add the verdict in one format for every benchmark.
inline void row(const Row& r) {
  const std::string cmp = r.at_most ? " ≤ " : " ≥ ";
  const std::string name = r.value_name.empty() ? std::string("median") : r.value_name;
  std::string ratio = "n/a", met = "n/a";
  if (r.value) {
    const double v = *r.value;
    ratio = name + " = " + (r.unit == "×" ? ratio_text(v) + "×" : num(v) + " " + r.unit);
    const bool ok = r.at_most ? v <= r.target : v >= r.target;
    if (ok) {
      met = "met";
    } else {
      // How far off, as the factor the figure must improve by (the same direction for both kinds).
      const double off = r.at_most ? v / r.target : (v > 0 ? r.target / v : 0);
      // Below 2× as a percentage ("by 8%": 8% better would meet it), above as a factor ("by 3.70×").
      char by[48] = "";
      if (off >= 2) {
        std::snprintf(by, sizeof by, " by %s×", ratio_text(off).c_str());
      } else if (off > 0) {
        const double pct = (off - 1) * 100;
        std::snprintf(by, sizeof by, pct < 1 ? " by %.1f%%" : " by %.0f%%", pct);
      }
      met = std::string("MISSED") + by;
    }
  }
  char t[32];
  std::snprintf(t, sizeof t, "%g", r.target);  // targets are round numbers: 1.3, 20, 0.8
  const std::string target = name + cmp + t + (r.unit == "×" ? "×" : " " + r.unit);
  std::printf("@row\t%s\t%s\t%s\t%s\t%s\t%s\n", r.figure.c_str(), r.mproc.c_str(), r.baseline.c_str(),
              ratio.c_str(), target.c_str(), met.c_str());
  std::fflush(stdout);
}

/// The baseline cell of a Python comparison when python3 is missing.
inline std::string no_python(const std::string& name) { return name + ": python3 not found"; }

}  // namespace bench
