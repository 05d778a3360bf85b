// The panoptic-quality statistics' inner loop: the pixel count of every distinct
// (ground-truth id, predicted id) pair of two segment maps, in one pass over the pixels.
//
// Segment maps are piecewise constant, so the pass only compares each pixel with its
// raster-order predecessor; a run of equal pairs reaches the hash table once. This replaces
// panopticapi's np.unique over 64-bit pixel codes (a sort of every pixel).

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels.h"

namespace panoptic2 {
namespace segment_maps {
namespace {

// Open-addressing table from (gt id, pred id) to the pair's index in first-occurrence
// order, with Fibonacci hashing and linear probing; grows at half load, so probes stay short.
class PairCounter {
 public:
  PairCounter() : slots_(std::size_t{1} << kInitialBits, -1), shift_(64 - kInitialBits) {}

  // No "same pair as last time" shortcut: along noisy boundaries it mispredicts more
  // often than it saves a probe.
  void add(int64_t gt, int64_t pred, int64_t count) {
    const uint64_t mask = slots_.size() - 1;
    for (uint64_t slot = hash(gt, pred);; slot = (slot + 1) & mask) {
      const int64_t index = slots_[slot];
      if (index < 0) {
        slots_[slot] = static_cast<int64_t>(result_.counts.size());
        result_.gt.push_back(gt);
        result_.pred.push_back(pred);
        result_.counts.push_back(count);
        if (2 * result_.counts.size() > slots_.size()) {
          grow();
        }
        return;
      }
      if (result_.gt[index] == gt && result_.pred[index] == pred) {
        result_.counts[index] += count;
        return;
      }
    }
  }

  PairCounts take() { return std::move(result_); }

 private:
  static constexpr int kInitialBits = 10;

  uint64_t hash(int64_t gt, int64_t pred) const {
    // The top bits of a multiplicative (Fibonacci) hash of both ids; ids are often
    // multiples of a label divisor, which the multiplications spread out.
    return (static_cast<uint64_t>(gt) * 0x9E3779B97F4A7C15ULL +
            static_cast<uint64_t>(pred) * 0xC2B2AE3D27D4EB4FULL) >>
           shift_;
  }

  void grow() {
    slots_.assign(2 * slots_.size(), -1);
    shift_ -= 1;
    const uint64_t mask = slots_.size() - 1;
    for (std::size_t index = 0; index < result_.counts.size(); ++index) {
      uint64_t slot = hash(result_.gt[index], result_.pred[index]);
      while (slots_[slot] >= 0) {
        slot = (slot + 1) & mask;
      }
      slots_[slot] = static_cast<int64_t>(index);
    }
  }

  std::vector<int64_t> slots_;
  int shift_;
  PairCounts result_;
};

// Pixels per block of the run search. A block without a change (most of them: runs are
// long) is skipped after an OR of differences per map, in the map's own type, which
// compilers vectorise; in the others, a bit mask of the changes is built without branches
// and walked bit by bit (a branch per pixel would mispredict at every change).
constexpr int64_t kBlock = 16;

inline int lowest_set_bit(uint32_t bits) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(bits);
#else
  int index = 0;
  while ((bits & 1u) == 0) {
    bits >>= 1;
    ++index;
  }
  return index;
#endif
}

template <typename GT, typename PRED>
void count_runs(const GT* gt, const PRED* pred, int64_t n, PairCounter& counter) {
  if (n == 0) {
    return;
  }
  int64_t start = 0;  // first pixel of the current run
  auto end_run = [&](int64_t i) {
    counter.add(static_cast<int64_t>(gt[start]), static_cast<int64_t>(pred[start]), i - start);
    start = i;
  };
  int64_t i = 1;
  for (; i + kBlock <= n; i += kBlock) {
    GT gt_differs = 0;
    for (int64_t k = i; k < i + kBlock; ++k) {
      gt_differs |= gt[k] ^ gt[k - 1];
    }
    PRED pred_differs = 0;
    for (int64_t k = i; k < i + kBlock; ++k) {
      pred_differs |= pred[k] ^ pred[k - 1];
    }
    if (gt_differs == 0 && pred_differs == 0) {
      continue;
    }
    uint32_t changes = 0;
    for (int64_t k = 0; k < kBlock; ++k) {
      const bool change = (gt[i + k] != gt[i + k - 1]) | (pred[i + k] != pred[i + k - 1]);
      changes |= static_cast<uint32_t>(change) << k;
    }
    for (; changes != 0; changes &= changes - 1) {
      end_run(i + lowest_set_bit(changes));
    }
  }
  for (; i < n; ++i) {
    if (gt[i] != gt[i - 1] || pred[i] != pred[i - 1]) {
      end_run(i);
    }
  }
  counter.add(static_cast<int64_t>(gt[start]), static_cast<int64_t>(pred[start]), n - start);
}

template <typename GT>
void count_runs_for_pred(const GT* gt, const void* pred, IdType pred_type, int64_t n,
                         PairCounter& counter) {
  switch (pred_type) {
    case IdType::kInt32:
      count_runs(gt, static_cast<const int32_t*>(pred), n, counter);
      break;
    case IdType::kUInt32:
      count_runs(gt, static_cast<const uint32_t*>(pred), n, counter);
      break;
    case IdType::kInt64:
      count_runs(gt, static_cast<const int64_t*>(pred), n, counter);
      break;
  }
}

}  // namespace

PairCounts count_segment_pairs(const void* gt, IdType gt_type, const void* pred,
                               IdType pred_type, int64_t n) {
  PairCounter counter;
  switch (gt_type) {
    case IdType::kInt32:
      count_runs_for_pred(static_cast<const int32_t*>(gt), pred, pred_type, n, counter);
      break;
    case IdType::kUInt32:
      count_runs_for_pred(static_cast<const uint32_t*>(gt), pred, pred_type, n, counter);
      break;
    case IdType::kInt64:
      count_runs_for_pred(static_cast<const int64_t*>(gt), pred, pred_type, n, counter);
      break;
  }
  return counter.take();
}

}  // namespace segment_maps
}  // namespace panoptic2
