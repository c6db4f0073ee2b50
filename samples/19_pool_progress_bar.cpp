// 19_pool_progress_bar — a progress bar for a long Pool::map. map(f, input, chunksize, on_progress) calls
// on_progress(done, total) in the calling thread each time results arrive. On a terminal the bar is redrawn
// in place ('\r' moves back to the start of the line); when the output goes to a file or a pipe, where '\r'
// would only make a mess, it prints one plain line per step instead. Try: ./19_pool_progress_bar, then
// ./19_pool_progress_bar | cat
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "mproc/mproc.hpp"

// A task that takes a while (20 ms), so that the progress is worth watching.
long slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return static_cast<long>(x) * x;
}

int main() {
  const bool tty = ::isatty(1) == 1;  // is stdout a terminal?
  mproc::Pool pool(4);
  std::vector<int> xs(200);
  std::iota(xs.begin(), xs.end(), 0);

  int last_percent = -10;
  auto on_progress = [&](std::size_t done, std::size_t total) {
    const int percent = static_cast<int>(100 * done / total);
    if (tty) {
      const int width = 40, filled = static_cast<int>(width * done / total);
      std::printf("\r[%s%s] %3d%% (%zu/%zu)", std::string(filled, '#').c_str(),
                  std::string(width - filled, '.').c_str(), percent, done, total);
      std::fflush(stdout);                           // no '\n', so flush by hand
    } else if (percent / 10 != last_percent / 10) {  // plain lines: one per 10 %
      std::printf("progress: %zu/%zu (%d%%)\n", done, total, percent);
    }
    last_percent = percent;
  };

  // Chunks of 5: results arrive 5 at a time, and on_progress is called as they do.
  std::vector<long> squares = pool.map(slow_square, xs, 5, on_progress);
  if (tty) std::printf("\n");  // leave the finished bar on its line

  const long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  std::printf("done: %zu results, sum of squares 0..199 = %ld (expected 2646700)\n", squares.size(), sum);
  return sum == 2646700 ? 0 : 1;
}
