// A fixed set of threads that run submitted tasks in submission order.
//
// Why: gRPC's callback API runs every handler on a few shared threads (two
// on this machine). A read that blocks one of them for a second (a state-at
// fold, a model load, an export batch) would hold up every call behind it,
// Log acks of serving code included. Reads run here instead, so at worst they
// queue behind each other.
//
// Thread-safe. The destructor runs every task already submitted, then joins:
// a task may be the only way a call gets answered.
#ifndef PREDLOG_SERVICES_SERVER_WORKER_POOL_H_
#define PREDLOG_SERVICES_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace predlog::services {

class WorkerPool {
 public:
  // `threads` must be >= 1.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> task);

  // Tasks submitted and not yet started.
  size_t queued() const;
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Work();

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_WORKER_POOL_H_
