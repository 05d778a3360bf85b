// A parallel loop whose items the threads claim one at a time.
//
// at::parallel_for gives each thread an equal, fixed share; on a machine shared with other
// processes a descheduled thread then holds up the whole loop while the others wait at its
// end. Here each thread takes the next unclaimed item when it is free, so a slowed thread
// simply takes fewer items.

#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace panoptic2 {
namespace cpu {

// Calls fn(worker, item) for every item in [0, num_items), each exactly once, from
// num_workers workers run by at::parallel_for (worker in [0, num_workers); one worker never
// runs on two threads at once, so per-worker state needs no locking). Results must not
// depend on which worker takes an item. Exceptions propagate as from at::parallel_for.
template <typename Fn>
void claimed_parallel_for(int64_t num_items, int64_t num_workers, const Fn& fn) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, num_workers, 1, [&](int64_t worker_begin, int64_t worker_end) {
    for (int64_t worker = worker_begin; worker < worker_end; ++worker) {
      for (int64_t item = next.fetch_add(1, std::memory_order_relaxed); item < num_items;
           item = next.fetch_add(1, std::memory_order_relaxed)) {
        fn(worker, item);
      }
    }
  });
}

// Workers for claimed_parallel_for: one per thread, and at least one.
inline int64_t claim_workers(int64_t num_items) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), num_items));
}

} // namespace cpu
} // namespace panoptic2
