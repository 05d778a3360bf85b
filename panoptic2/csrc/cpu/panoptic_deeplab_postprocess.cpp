// CPU kernels of Panoptic-DeepLab post-processing: center grouping, majority-vote merge, and
// panoptic_deeplab_postprocess, which does center finding, grouping and merge of one image
// reading each input map once.
//
// All must give exactly the outputs of the PyTorch reference
// (panoptic2/ops/_reference.py, find_instance_center) and of the CUDA kernels, so every float
// operation below is written as its own statement, in the reference's order, and rounds to
// float32 on its own (torch builds extensions with an ISO -std=c++NN, where GCC does not contract
// a * b + c into an FMA across statements, and clang never does).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/claimed_parallel_for.h"
#include "cpu/instance_centers.h"
#include "cpu/nearest_center.h"
#include "cpu/panoptic_labels.h"

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
  const at::Tensor centers_c = centers.contiguous();
  const cpu::NearestCenters nearest(centers_c.data_ptr<int64_t>(), num_centers, height, width);
  const at::Tensor offsets_c = offsets.contiguous();
  const at::Tensor mask_c = thing_mask.contiguous();
  const float* dy_ptr = offsets_c.data_ptr<float>();
  const float* dx_ptr = dy_ptr + height * width;
  const bool* mask_ptr = mask_c.data_ptr<bool>();
  int64_t* out_ptr = out.data_ptr<int64_t>();
  at::parallel_for(0, height, 1, [&](int64_t row_begin, int64_t row_end) {
    for (int64_t y = row_begin; y < row_end; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        const int64_t p = y * width + x;
        if (mask_ptr[p]) {
          const float py = static_cast<float>(y) + dy_ptr[p];
          const float px = static_cast<float>(x) + dx_ptr[p];
          out_ptr[p] = nearest.nearest(py, px) + 1;
        }
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

  const cpu::PanopticLabels labels =
      cpu::panoptic_labels(hist.data(), num_instances, num_classes, is_thing, label_divisor,
                           stuff_area, void_label);
  const std::vector<int64_t>& instance_label = labels.instance;
  const std::vector<int64_t>& class_label = labels.stuff;

  int64_t* out_ptr = out.data_ptr<int64_t>();
  at::parallel_for(0, num_pixels, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t k = mask[p] ? ins[p] : 0;
      out_ptr[p] = k > 0 ? instance_label[k] : class_label[sem[p]];
    }
  });
  return out;
}

// Rows per block of the grouping pass; the threads claim blocks one at a time (instances
// are not spread evenly, and other processes may slow one thread).
constexpr int64_t kBlockRows = 4;

// Copies of each part's class counts outside instances, filled in turn by x: consecutive
// pixels of one class then add to different counters instead of waiting on one.
constexpr int64_t kStuffCopies = 4;

[[noreturn]] C10_NOINLINE void fail_class_id(int64_t value, int64_t y, int64_t x,
                                             int64_t num_classes) {
  TORCH_CHECK(false, "panoptic2::panoptic_deeplab_postprocess: sem_seg value ", value, " at (",
              y, ", ", x, ") is outside [0, ", num_classes, ")");
}

// Grouping and counting of rows [y_begin, y_end): writes each pixel's code (k in 1..K for a
// thing pixel of instance k, K + 1 + c for any other pixel of class c), adds the class of
// each thing pixel to row k of the instance counts (`own`, row k at (k - 1) * C, or
// `shared_counts` when not null) and of each other pixel to one of the kStuffCopies copies
// of the class counts in `stuff`. Everything the loop reads is a local or a restrict pointer,
// so the compiler keeps it in registers across the counter stores.
template <typename Code, bool kHasMask>
void group_and_count_rows(const int64_t* __restrict sem, const float* __restrict dy,
                          const float* __restrict dx, const bool* __restrict thing_mask,
                          const bool* __restrict is_thing_class, int64_t y_begin,
                          int64_t y_end, int64_t width, int64_t num_classes,
                          const cpu::NearestCenters& nearest, Code* __restrict codes,
                          int64_t* __restrict stuff, int64_t* __restrict own,
                          std::atomic<int64_t>* shared_counts) {
  const int64_t num_centers = nearest.num_centers();
  const Code stuff_base = static_cast<Code>(num_centers + 1);
  for (int64_t y = y_begin; y < y_end; ++y) {
    const int64_t row = y * width;
    const float fy = static_cast<float>(y);
    for (int64_t x = 0; x < width; ++x) {
      const int64_t p = row + x;
      const int64_t c = sem[p];
      // One unsigned compare refuses negative ids too.
      if (C10_UNLIKELY(static_cast<uint64_t>(c) >= static_cast<uint64_t>(num_classes))) {
        fail_class_id(c, y, x, num_classes);
      }
      const bool thing = kHasMask ? thing_mask[p] : is_thing_class[c];
      if (thing && num_centers > 0) {
        const float py = fy + dy[p];
        const float px = static_cast<float>(x) + dx[p];
        const int64_t k = nearest.nearest(py, px) + 1;
        codes[p] = static_cast<Code>(k);
        if (shared_counts != nullptr) {
          shared_counts[(k - 1) * num_classes + c].fetch_add(1, std::memory_order_relaxed);
        } else {
          ++own[k * num_classes + c];
        }
      } else {
        codes[p] = static_cast<Code>(stuff_base + c);
        ++stuff[(x % kStuffCopies) * num_classes + c];
      }
    }
  }
}

// Grouping and counting of one image (group_and_count_rows over all rows, in parallel),
// summed into `counts` ((K + 1) x C: row k counts the classes of the thing pixels of instance
// k, row 0 those of all other pixels). The instance rows of the parts are private when they
// fit in kMaxPartialCells; otherwise all parts add to one copy atomically.
template <typename Code>
void group_and_count(const int64_t* sem, const float* offsets, const bool* thing_mask,
                     const bool* is_thing_class, int64_t height, int64_t width,
                     int64_t num_classes, const cpu::NearestCenters& nearest, Code* codes,
                     std::vector<int64_t>& counts) {
  const int64_t num_pixels = height * width;
  const int64_t num_centers = nearest.num_centers();
  const int64_t instance_cells = num_centers * num_classes; // rows 1..K
  const int64_t stuff_cells = kStuffCopies * num_classes;
  const int64_t num_blocks = (height + kBlockRows - 1) / kBlockRows;
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), num_pixels / kMinPixelsPerPartial));
  const bool shared = parts > 1 && parts * instance_cells > kMaxPartialCells;
  const int64_t part_cells = stuff_cells + (shared ? 0 : instance_cells);
  std::vector<int64_t> partial(parts * part_cells, 0);
  std::unique_ptr<std::atomic<int64_t>[]> shared_counts(
      shared ? new std::atomic<int64_t>[instance_cells]() : nullptr);
  cpu::claimed_parallel_for(num_blocks, parts, [&](int64_t part, int64_t block) {
    int64_t* stuff = partial.data() + part * part_cells;
    // Row k of the instance counts starts at (k - 1) * C.
    int64_t* own = stuff + stuff_cells - num_classes;
    const int64_t y_begin = block * kBlockRows;
    const int64_t y_end = std::min(y_begin + kBlockRows, height);
    const float* dy = offsets;
    const float* dx = offsets + num_pixels;
    if (thing_mask != nullptr) {
      group_and_count_rows<Code, true>(sem, dy, dx, thing_mask, is_thing_class, y_begin, y_end,
                                       width, num_classes, nearest, codes, stuff, own,
                                       shared_counts.get());
    } else {
      group_and_count_rows<Code, false>(sem, dy, dx, thing_mask, is_thing_class, y_begin,
                                        y_end, width, num_classes, nearest, codes, stuff, own,
                                        shared_counts.get());
    }
  });
  counts.assign((num_centers + 1) * num_classes, 0);
  for (int64_t part = 0; part < parts; ++part) {
    const int64_t* stuff = partial.data() + part * part_cells;
    for (int64_t i = 0; i < stuff_cells; ++i) {
      counts[i % num_classes] += stuff[i];
    }
    for (int64_t i = 0; !shared && i < instance_cells; ++i) {
      counts[num_classes + i] += stuff[stuff_cells + i];
    }
  }
  for (int64_t i = 0; shared && i < instance_cells; ++i) {
    counts[num_classes + i] = shared_counts[i].load(std::memory_order_relaxed);
  }
}

// The panoptic labels of the codes written by group_and_count.
template <typename Code>
void paint(const Code* codes, int64_t num_pixels, const std::vector<int64_t>& lookup,
           int64_t* out) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t num_chunks = (num_pixels + kChunk - 1) / kChunk;
  const int64_t* table = lookup.data();
  cpu::claimed_parallel_for(
      num_chunks, cpu::claim_workers(num_chunks), [&](int64_t /*worker*/, int64_t chunk) {
        const Code* __restrict from = codes;
        const int64_t* __restrict label = table;
        int64_t* __restrict to = out;
        const int64_t end = std::min(num_pixels, (chunk + 1) * kChunk);
        for (int64_t p = chunk * kChunk; p < end; ++p) {
          to[p] = label[from[p]];
        }
      });
}

template <typename Code>
void group_and_merge(const int64_t* sem, const float* offsets, const bool* thing_mask,
                     const bool* is_thing_class, int64_t height, int64_t width,
                     int64_t num_classes, const cpu::NearestCenters& nearest,
                     int64_t label_divisor, int64_t stuff_area, int64_t void_label,
                     int64_t* out) {
  const int64_t num_pixels = height * width;
  const int64_t num_centers = nearest.num_centers();
  // Every code is written by group_and_count: no zero fill.
  const std::unique_ptr<Code[]> codes(new Code[num_pixels]);
  std::vector<int64_t> counts;
  group_and_count(sem, offsets, thing_mask, is_thing_class, height, width, num_classes,
                  nearest, codes.get(), counts);
  const cpu::PanopticLabels labels =
      cpu::panoptic_labels(counts.data(), num_centers, num_classes, is_thing_class,
                           label_divisor, stuff_area, void_label);
  std::vector<int64_t> lookup(labels.instance);
  lookup.insert(lookup.end(), labels.stuff.begin(), labels.stuff.end());
  paint(codes.get(), num_pixels, lookup, out);
}

std::tuple<at::Tensor, at::Tensor> panoptic_deeplab_postprocess_cpu(
    const at::Tensor& sem_seg, const at::Tensor& center_heatmap, const at::Tensor& offsets,
    const std::optional<at::Tensor>& thing_mask, const at::Tensor& is_thing_class,
    double threshold, int64_t nms_kernel, std::optional<int64_t> top_k, int64_t label_divisor,
    int64_t stuff_area, int64_t void_label) {
  constexpr const char* kOp = "panoptic2::panoptic_deeplab_postprocess";
  TORCH_CHECK(sem_seg.dim() == 2, kOp, ": sem_seg must be (H, W), got ", sem_seg.sizes());
  const int64_t height = sem_seg.size(0);
  const int64_t width = sem_seg.size(1);
  check_map(sem_seg, "sem_seg", at::kLong, height, width);
  check_map(center_heatmap, "center_heatmap", at::kFloat, height, width);
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == 2 && offsets.size(1) == height &&
                  offsets.size(2) == width,
              kOp, ": offsets must have shape (2, ", height, ", ", width, "), got ",
              offsets.sizes());
  TORCH_CHECK(offsets.scalar_type() == at::kFloat, kOp, ": offsets must be float32, got ",
              offsets.scalar_type());
  if (thing_mask.has_value()) {
    check_map(*thing_mask, "thing_mask", at::kBool, height, width);
  }
  TORCH_CHECK(is_thing_class.dim() == 1 && is_thing_class.scalar_type() == at::kBool, kOp,
              ": is_thing_class must be a (C,) bool tensor, got ", is_thing_class.sizes(), " ",
              is_thing_class.scalar_type());
  TORCH_CHECK(nms_kernel >= 1 && nms_kernel % 2 == 1, kOp,
              ": nms_kernel must be a positive odd number, got ", nms_kernel);
  TORCH_CHECK(!top_k.has_value() || *top_k >= 1, kOp, ": top_k must be >= 1 or None, got ",
              top_k.value_or(0));
  // As F.threshold does: the threshold is compared in the heatmap's dtype.
  const float threshold_f = c10::Scalar(threshold).to<float>();

  const at::Tensor heatmap_c = center_heatmap.contiguous();
  const std::vector<cpu::Peak> peaks = cpu::find_peaks(
      heatmap_c.data_ptr<float>(), height, width, threshold_f, nms_kernel, top_k);
  const int64_t num_centers = static_cast<int64_t>(peaks.size());
  at::Tensor centers = at::empty({num_centers, 2}, sem_seg.options());
  int64_t* centers_ptr = centers.data_ptr<int64_t>();
  for (int64_t j = 0; j < num_centers; ++j) {
    centers_ptr[2 * j] = peaks[j].y;
    centers_ptr[2 * j + 1] = peaks[j].x;
  }

  at::Tensor out = at::empty({height, width}, sem_seg.options());
  const int64_t num_pixels = height * width;
  if (num_pixels == 0) {
    return {out, centers};
  }
  const int64_t num_classes = is_thing_class.size(0);
  const at::Tensor sem_c = sem_seg.contiguous();
  const at::Tensor offsets_c = offsets.contiguous();
  const at::Tensor is_thing_c = is_thing_class.contiguous();
  at::Tensor mask_c;
  if (thing_mask.has_value()) {
    mask_c = thing_mask->contiguous();
  }
  const bool* mask_ptr = mask_c.defined() ? mask_c.data_ptr<bool>() : nullptr;
  const cpu::NearestCenters nearest(centers_ptr, num_centers, height, width);
  // The narrowest code type that holds K + 1 + C codes: the codes are the one map written
  // and read back between the passes.
  const int64_t num_codes = num_centers + 1 + num_classes;
  auto run = [&](auto code_type) {
    using Code = decltype(code_type);
    group_and_merge<Code>(sem_c.data_ptr<int64_t>(), offsets_c.data_ptr<float>(), mask_ptr,
                          is_thing_c.data_ptr<bool>(), height, width, num_classes, nearest,
                          label_divisor, stuff_area, void_label, out.data_ptr<int64_t>());
  };
  if (num_codes <= int64_t{1} << 16) {
    run(uint16_t{});
  } else if (num_codes <= int64_t{1} << 32) {
    run(uint32_t{});
  } else {
    run(uint64_t{});
  }
  return {out, centers};
}

} // namespace

TORCH_LIBRARY_IMPL(panoptic2, CPU, m) {
  m.impl("group_pixels", &group_pixels_cpu);
  m.impl("merge_semantic_and_instance", &merge_semantic_and_instance_cpu);
  m.impl("panoptic_deeplab_postprocess", &panoptic_deeplab_postprocess_cpu);
}

} // namespace panoptic2
