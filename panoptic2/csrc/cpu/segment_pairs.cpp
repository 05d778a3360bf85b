// CPU kernel of the panoptic-quality statistics: the pixel count of every distinct
// (ground-truth id, predicted id) pair of two segment maps, in one pass over the pixels.
//
// Segment maps are piecewise constant, so the pass only compares each pixel with its
// raster-order predecessor; a run of equal pairs reaches the hash table once. This replaces
// panopticapi's np.unique over 64-bit pixel codes (a sort of every pixel).

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace panoptic2 {
namespace {

// Open-addressing table from (gt id, pred id) to the pair's index in first-occurrence
// order, with Fibonacci hashing and linear probing; grows at half load, so probes stay short.
class PairCounter {
 public:
  PairCounter() : slots_(size_t{1} << kInitialBits, -1), shift_(64 - kInitialBits) {}

  // No "same pair as last time" shortcut: along noisy boundaries it mispredicts more
  // often than it saves a probe.
  void add(int64_t gt, int64_t pred, int64_t count) {
    const uint64_t mask = slots_.size() - 1;
    for (uint64_t slot = hash(gt, pred);; slot = (slot + 1) & mask) {
      const int64_t index = slots_[slot];
      if (index < 0) {
        slots_[slot] = static_cast<int64_t>(pairs_.size());
        pairs_.push_back({gt, pred, count});
        if (2 * pairs_.size() > slots_.size()) {
          grow();
        }
        return;
      }
      Pair& pair = pairs_[index];
      if (pair.gt == gt && pair.pred == pred) {
        pair.count += count;
        return;
      }
    }
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor> tensors() const {
    const int64_t n = static_cast<int64_t>(pairs_.size());
    const auto options = at::TensorOptions().dtype(at::kLong);
    at::Tensor gt = at::empty({n}, options);
    at::Tensor pred = at::empty({n}, options);
    at::Tensor counts = at::empty({n}, options);
    int64_t* gt_ptr = gt.data_ptr<int64_t>();
    int64_t* pred_ptr = pred.data_ptr<int64_t>();
    int64_t* counts_ptr = counts.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      gt_ptr[i] = pairs_[i].gt;
      pred_ptr[i] = pairs_[i].pred;
      counts_ptr[i] = pairs_[i].count;
    }
    return {gt, pred, counts};
  }

 private:
  struct Pair {
    int64_t gt, pred, count;
  };
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
    for (size_t index = 0; index < pairs_.size(); ++index) {
      uint64_t slot = hash(pairs_[index].gt, pairs_[index].pred);
      while (slots_[slot] >= 0) {
        slot = (slot + 1) & mask;
      }
      slots_[slot] = static_cast<int64_t>(index);
    }
  }

  std::vector<int64_t> slots_;
  int shift_;
  std::vector<Pair> pairs_;
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
    counter.add(gt[start], pred[start], i - start);
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
  counter.add(gt[start], pred[start], n - start);
}

template <typename GT>
void count_runs_dispatch_pred(const GT* gt, const at::Tensor& pred, int64_t n,
                              PairCounter& counter) {
  if (pred.scalar_type() == at::kInt) {
    count_runs(gt, pred.data_ptr<int32_t>(), n, counter);
  } else {
    count_runs(gt, pred.data_ptr<int64_t>(), n, counter);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> count_segment_pairs_cpu(const at::Tensor& gt_ids,
                                                                       const at::Tensor& pred_ids) {
  TORCH_CHECK(gt_ids.sizes() == pred_ids.sizes(),
              "panoptic2::count_segment_pairs: gt_ids and pred_ids must have the same shape, "
              "got ", gt_ids.sizes(), " and ", pred_ids.sizes());
  for (const at::Tensor* t : {&gt_ids, &pred_ids}) {
    TORCH_CHECK(t->scalar_type() == at::kInt || t->scalar_type() == at::kLong,
                "panoptic2::count_segment_pairs: ids must be int32 or int64, got ",
                t->scalar_type());
  }
  const at::Tensor gt = gt_ids.contiguous();
  const at::Tensor pred = pred_ids.contiguous();
  const int64_t n = gt.numel();
  PairCounter counter;
  if (gt.scalar_type() == at::kInt) {
    count_runs_dispatch_pred(gt.data_ptr<int32_t>(), pred, n, counter);
  } else {
    count_runs_dispatch_pred(gt.data_ptr<int64_t>(), pred, n, counter);
  }
  return counter.tensors();
}

}  // namespace

TORCH_LIBRARY_IMPL(panoptic2, CPU, m) {
  m.impl("count_segment_pairs", &count_segment_pairs_cpu);
}

}  // namespace panoptic2
