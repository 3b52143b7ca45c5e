// What every benchmark binary measures the same way: latency percentiles and
// the CPU its own process used.
#ifndef PREDLOG_BENCH_MEASURE_H_
#define PREDLOG_BENCH_MEASURE_H_

#include <sys/resource.h>

#include <algorithm>
#include <vector>

namespace predlog::bench {

// The q-quantile (0 <= q <= 1) of `samples` by the nearest-rank method, in
// their unit; 0 for no samples. Sorts `samples` in place.
inline double Percentile(std::vector<double>& samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  return samples[std::min(samples.size() - 1,
                          static_cast<size_t>(q * static_cast<double>(samples.size())))];
}

// User plus system CPU seconds of this whole process so far (getrusage).
inline double ProcessCpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace predlog::bench

#endif  // PREDLOG_BENCH_MEASURE_H_
