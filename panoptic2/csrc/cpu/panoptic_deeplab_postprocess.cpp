// CPU kernels of Panoptic-DeepLab post-processing: center grouping and majority-vote merge.
//
// Both must give exactly the outputs of the PyTorch reference
// (panoptic2/ops/_reference.py) and of the CUDA kernels, so every float
// operation below is written as its own statement, in the reference's order, and rounds to
// float32 on its own (torch builds extensions with -std=c++17, where GCC does not contract
// a * b + c into an FMA across statements, and clang never does).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace panoptic2 {
namespace {

// Histogram cells (summed over the per-thread partial histograms) above which threads share
// fewer partials, so memory stays bounded for many centers x many classes (no caps).
constexpr int64_t kMaxPartialCells = int64_t{1} << 24;
// Pixels per thread below which splitting the histogram is not worth its reduction.
constexpr int64_t kMinPixelsPerPartial = int64_t{1} << 15;

void check_map(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t height,
               int64_t width) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == height && t.size(1) == width, "panoptic2: ", name,
              " must have shape (", height, ", ", width, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "panoptic2: ", name, " must be ", dtype, ", got ",
              t.scalar_type());
}

at::Tensor group_pixels_cpu(const at::Tensor& centers, const at::Tensor& offsets,
                            const at::Tensor& thing_mask) {
  TORCH_CHECK(centers.dim() == 2 && centers.size(1) == 2,
              "panoptic2::group_pixels: centers must have shape (K, 2), got ", centers.sizes());
  TORCH_CHECK(centers.scalar_type() == at::kLong,
              "panoptic2::group_pixels: centers must be int64, got ", centers.scalar_type());
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == 2,
              "panoptic2::group_pixels: offsets must have shape (2, H, W), got ",
              offsets.sizes());
  TORCH_CHECK(offsets.scalar_type() == at::kFloat,
              "panoptic2::group_pixels: offsets must be float32, got ", offsets.scalar_type());
  const int64_t height = offsets.size(1);
  const int64_t width = offsets.size(2);
  check_map(thing_mask, "thing_mask", at::kBool, height, width);

  at::Tensor out = at::zeros({height, width}, offsets.options().dtype(at::kLong));
  const int64_t num_centers = centers.size(0);
  if (num_centers == 0 || height * width == 0) {
    return out;
  }

  // Centers sorted by (y, index): a pixel scans outwards from its own row and stops in each
  // direction once the y term alone exceeds the best distance. fl(cy - py) is monotonic in
  // cy and fl(yy + xx) >= yy for xx >= 0, so every skipped center is strictly farther than
  // the best one: the result equals the exhaustive scan, ties included (smaller index wins).
  const at::Tensor centers_c = centers.contiguous();
  const int64_t* c_ptr = centers_c.data_ptr<int64_t>();
  std::vector<int64_t> order(num_centers);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return c_ptr[2 * a] < c_ptr[2 * b]; });
  std::vector<float> sorted_y(num_centers);
  std::vector<float> sorted_x(num_centers);
  for (int64_t j = 0; j < num_centers; ++j) {
    sorted_y[j] = static_cast<float>(c_ptr[2 * order[j]]);
    sorted_x[j] = static_cast<float>(c_ptr[2 * order[j] + 1]);
  }

  const at::Tensor offsets_c = offsets.contiguous();
  const at::Tensor mask_c = thing_mask.contiguous();
  const float* dy_ptr = offsets_c.data_ptr<float>();
  const float* dx_ptr = dy_ptr + height * width;
  const bool* mask_ptr = mask_c.data_ptr<bool>();
  int64_t* out_ptr = out.data_ptr<int64_t>();

  at::parallel_for(0, height, 1, [&](int64_t row_begin, int64_t row_end) {
    for (int64_t y = row_begin; y < row_end; ++y) {
      int64_t prev_sorted = -1; // sorted position of the previous thing pixel's center
      for (int64_t x = 0; x < width; ++x) {
        const int64_t p = y * width + x;
        if (!mask_ptr[p]) {
          continue;
        }
        const float py = static_cast<float>(y) + dy_ptr[p];
        const float px = static_cast<float>(x) + dx_ptr[p];
        float best = std::numeric_limits<float>::infinity();
        int64_t best_index = 0; // also the answer when every distance is inf or NaN
        auto distance = [&](int64_t j) -> float {
          const float ey = sorted_y[j] - py;
          const float ex = sorted_x[j] - px;
          return ey * ey + ex * ex;
        };
        // Neighbouring pixels usually share their nearest center: starting from the
        // previous pixel's, a real candidate, bounds the scan from the first visit. The
        // result is unchanged: the scan below still visits every center that could be
        // nearer or tie (the seed itself included, so ties still go to the smaller index).
        if (prev_sorted >= 0) {
          const float d = distance(prev_sorted);
          // Only a finite seed: with every distance inf or NaN the answer stays index 0.
          if (d < std::numeric_limits<float>::infinity()) {
            best = d;
            best_index = order[prev_sorted];
          }
        }
        int64_t best_sorted = prev_sorted;
        auto visit = [&](int64_t j) -> bool {
          const float ey = sorted_y[j] - py;
          const float yy = ey * ey;
          if (yy > best) {
            return false;
          }
          const float ex = sorted_x[j] - px;
          const float xx = ex * ex;
          const float d = yy + xx;
          const int64_t index = order[j];
          if (d < best || (d == best && index < best_index)) {
            best = d;
            best_index = index;
            best_sorted = j;
          }
          return true;
        };
        const int64_t start =
            std::lower_bound(sorted_y.begin(), sorted_y.end(), py) - sorted_y.begin();
        for (int64_t j = start; j < num_centers && visit(j); ++j) {
        }
        for (int64_t j = start - 1; j >= 0 && visit(j); --j) {
        }
        out_ptr[p] = best_index + 1;
        prev_sorted = best == std::numeric_limits<float>::infinity() ? -1 : best_sorted;
      }
    }
  });
  return out;
}

at::Tensor merge_semantic_and_instance_cpu(const at::Tensor& sem_seg, const at::Tensor& ins_seg,
                                           const at::Tensor& thing_mask,
                                           const at::Tensor& is_thing_class,
                                           int64_t num_instances, int64_t label_divisor,
                                           int64_t stuff_area, int64_t void_label) {
  TORCH_CHECK(sem_seg.dim() == 2, "panoptic2::merge_semantic_and_instance: sem_seg must be (H, W), got ",
              sem_seg.sizes());
  const int64_t height = sem_seg.size(0);
  const int64_t width = sem_seg.size(1);
  check_map(sem_seg, "sem_seg", at::kLong, height, width);
  check_map(ins_seg, "ins_seg", at::kLong, height, width);
  check_map(thing_mask, "thing_mask", at::kBool, height, width);
  TORCH_CHECK(is_thing_class.dim() == 1 && is_thing_class.scalar_type() == at::kBool,
              "panoptic2::merge_semantic_and_instance: is_thing_class must be a (C,) bool "
              "tensor, got ", is_thing_class.sizes(), " ", is_thing_class.scalar_type());
  TORCH_CHECK(num_instances >= 0, "panoptic2::merge_semantic_and_instance: num_instances must "
              "be >= 0, got ", num_instances);

  const int64_t num_classes = is_thing_class.size(0);
  const int64_t num_pixels = height * width;
  at::Tensor out = at::empty({height, width}, sem_seg.options());
  if (num_pixels == 0) {
    return out;
  }
  const at::Tensor sem_c = sem_seg.contiguous();
  const at::Tensor ins_c = ins_seg.contiguous();
  const at::Tensor mask_c = thing_mask.contiguous();
  const at::Tensor is_thing_c = is_thing_class.contiguous();
  const int64_t* sem = sem_c.data_ptr<int64_t>();
  const int64_t* ins = ins_c.data_ptr<int64_t>();
  const bool* mask = mask_c.data_ptr<bool>();
  const bool* is_thing = is_thing_c.data_ptr<bool>();

  // Row r of the histogram counts classes: r = k for the thing pixels of instance k, and
  // r = 0 for all other pixels (so row 0 holds the area each class has outside instances).
  const int64_t cells = (num_instances + 1) * num_classes;
  int64_t parts = std::min<int64_t>(at::get_num_threads(), num_pixels / kMinPixelsPerPartial);
  parts = std::max<int64_t>(1, std::min<int64_t>(parts, kMaxPartialCells / std::max<int64_t>(cells, 1)));
  std::vector<int64_t> hist(parts * cells, 0);
  at::parallel_for(0, parts, 1, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t part = part_begin; part < part_end; ++part) {
      int64_t* h = hist.data() + part * cells;
      const int64_t begin = num_pixels * part / parts;
      const int64_t end = num_pixels * (part + 1) / parts;
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = sem[p];
        const int64_t k = ins[p];
        TORCH_CHECK(c >= 0 && c < num_classes, "panoptic2::merge_semantic_and_instance: "
                    "sem_seg value ", c, " at (", p / width, ", ", p % width,
                    ") is outside [0, ", num_classes, ")");
        TORCH_CHECK(k >= 0 && k <= num_instances, "panoptic2::merge_semantic_and_instance: "
                    "ins_seg value ", k, " at (", p / width, ", ", p % width,
                    ") is outside [0, ", num_instances, "]");
        const int64_t row = mask[p] ? k : 0;
        ++h[row * num_classes + c];
      }
    }
  });
  for (int64_t part = 1; part < parts; ++part) {
    for (int64_t i = 0; i < cells; ++i) {
      hist[i] += hist[part * cells + i];
    }
  }

  // Majority vote (first maximum = smaller class on ties), then per-class numbering in
  // center order; an instance without thing pixels keeps label -1 and takes no number.
  std::vector<int64_t> instance_label(num_instances + 1, -1);
  std::vector<int64_t> next_number(num_classes, 0);
  for (int64_t k = 1; k <= num_instances; ++k) {
    const int64_t* row = hist.data() + k * num_classes;
    const int64_t best = std::max_element(row, row + num_classes) - row;
    if (row[best] > 0) {
      instance_label[k] = best * label_divisor + ++next_number[best];
    }
  }
  std::vector<int64_t> class_label(num_classes, void_label);
  for (int64_t c = 0; c < num_classes; ++c) {
    if (!is_thing[c] && hist[c] >= stuff_area) {
      class_label[c] = c * label_divisor;
    }
  }

  int64_t* out_ptr = out.data_ptr<int64_t>();
  at::parallel_for(0, num_pixels, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t k = mask[p] ? ins[p] : 0;
      out_ptr[p] = k > 0 ? instance_label[k] : class_label[sem[p]];
    }
  });
  return out;
}

} // namespace

TORCH_LIBRARY_IMPL(panoptic2, CPU, m) {
  m.impl("group_pixels", &group_pixels_cpu);
  m.impl("merge_semantic_and_instance", &merge_semantic_and_instance_cpu);
}

} // namespace panoptic2
