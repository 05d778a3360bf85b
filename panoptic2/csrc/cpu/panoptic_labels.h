// The merge rule of Panoptic-DeepLab on class counts, shared by the CPU kernels: majority
// vote per instance, numbering per class in center order, stuff kept above an area.

#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace panoptic2 {
namespace cpu {

struct PanopticLabels {
  std::vector<int64_t> instance; // [k] for k in 1..K; -1 for an instance without thing pixels
  std::vector<int64_t> stuff;    // [c]: c * label_divisor when kept, else void_label
};

// counts: (K + 1) rows of C classes; row k > 0 counts the thing pixels of instance k by
// class, row 0 the classes of all other pixels. The majority class is the first maximum
// (the smaller class on ties); each class numbers its non-empty instances 1, 2, ... in
// center order; a non-thing class is kept where row 0 holds at least stuff_area of it.
inline PanopticLabels panoptic_labels(const int64_t* counts, int64_t num_instances,
                                      int64_t num_classes, const bool* is_thing_class,
                                      int64_t label_divisor, int64_t stuff_area,
                                      int64_t void_label) {
  PanopticLabels labels;
  labels.instance.assign(num_instances + 1, -1);
  std::vector<int64_t> next_number(num_classes, 0);
  for (int64_t k = 1; k <= num_instances; ++k) {
    const int64_t* row = counts + k * num_classes;
    const int64_t best = std::max_element(row, row + num_classes) - row;
    if (num_classes > 0 && row[best] > 0) {
      labels.instance[k] = best * label_divisor + ++next_number[best];
    }
  }
  labels.stuff.assign(num_classes, void_label);
  for (int64_t c = 0; c < num_classes; ++c) {
    if (!is_thing_class[c] && counts[c] >= stuff_area) {
      labels.stuff[c] = c * label_divisor;
    }
  }
  return labels;
}

} // namespace cpu
} // namespace panoptic2
