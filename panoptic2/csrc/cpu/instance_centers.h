// Instance centers of a Panoptic-DeepLab heatmap on the CPU: the semantics of
// find_instance_center in panoptic2/modeling/postprocessing/panoptic_deeplab.py, without
// building the thresholded or pooled maps.
//
// The reference sets scores <= threshold to -1 (float32 comparison), max-pools with a
// nms_kernel x nms_kernel window (NaN propagates), and keeps the positive scores equal to
// their window's maximum. For a score v > 0 that is above the threshold, every window value
// w at or below the threshold is below v as well, so v survives exactly when no raw window
// value is NaN or greater than v: the raw heatmap is pooled, only around such scores.

#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include "cpu/claimed_parallel_for.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

namespace panoptic2 {
namespace cpu {

struct Peak {
  int64_t y;
  int64_t x;
  float score;
};

// Window maxima of one heatmap row, NaN read as +inf: out[x] = max(row[x - radius ..
// x + radius]), the window clipped to the row. `padded` is scratch of row length + 2 * radius.
// With NaN as +inf a window holding a NaN has maximum +inf, which no finite score reaches;
// a score of +inf is then checked for NaN neighbours on its own (has_nan_in_window).
inline void row_window_max(const float* row, int64_t width, int64_t radius, float* padded,
                           float* out) {
  const float low = -std::numeric_limits<float>::infinity();
  const float high = std::numeric_limits<float>::infinity();
  const int64_t length = width + 2 * radius;
  std::fill(padded, padded + radius, low);
  for (int64_t x = 0; x < width; ++x) {
    const float v = row[x];
    padded[radius + x] = v != v ? high : v;
  }
  std::fill(padded + radius + width, padded + length, low);
  // After each pass padded[i] = max(row window [i, i + span)); two overlapping spans of a
  // power of two then cover any window (~log2(kernel) passes instead of kernel).
  const int64_t kernel = 2 * radius + 1;
  int64_t span = 1;
  while (2 * span <= kernel) {
    for (int64_t i = 0; i + span < length; ++i) {
      padded[i] = std::max(padded[i], padded[i + span]);
    }
    span *= 2;
  }
  for (int64_t x = 0; x < width; ++x) {
    out[x] = std::max(padded[x], padded[x + kernel - span]);
  }
}

// Whether the window of (y, x), clipped to the image, holds a NaN.
inline bool has_nan_in_window(const float* heatmap, int64_t height, int64_t width, int64_t y,
                              int64_t x, int64_t radius) {
  for (int64_t r = std::max<int64_t>(y - radius, 0); r <= std::min(y + radius, height - 1);
       ++r) {
    const float* row = heatmap + r * width;
    for (int64_t c = std::max<int64_t>(x - radius, 0); c <= std::min(x + radius, width - 1);
         ++c) {
      if (row[c] != row[c]) {
        return true;
      }
    }
  }
  return false;
}

// Whether the score v at (y, x) is not below any value of its window (clipped to the image)
// and the window holds no NaN: a direct read of the window, for scattered candidates. The
// 3 x 3 neighbours come first, as a score off a blob's peak is below one of them.
inline bool is_window_max(const float* heatmap, int64_t height, int64_t width, int64_t y,
                          int64_t x, int64_t radius, float v) {
  auto none_above = [&](int64_t r) {
    const int64_t c_begin = std::max<int64_t>(x - r, 0);
    const int64_t c_end = std::min(x + r, width - 1);
    for (int64_t row = std::max<int64_t>(y - r, 0); row <= std::min(y + r, height - 1); ++row) {
      const float* values = heatmap + row * width;
      for (int64_t c = c_begin; c <= c_end; ++c) {
        if (!(values[c] <= v)) { // a greater value or NaN
          return false;
        }
      }
    }
    return true;
  };
  const int64_t near = std::min<int64_t>(radius, 1);
  return none_above(near) && (radius == near || none_above(radius));
}

// Centers (local maxima above the threshold), in row-major order, at most the top_k
// highest by the strict rule: with at least top_k candidates, only scores above the top_k-th
// largest are kept.
//
// A candidate is a score above both 0 and the threshold. Rows are first scanned in chunks
// by a branch-free test (the compiler vectorises it), as most of a heatmap is below the
// threshold. A row's candidates are then checked by reading their windows directly when
// they are few, and otherwise against cached window maxima of whole rows (a plateau above
// the threshold would make the direct reads cost kernel^2 per pixel).
inline std::vector<Peak> find_peaks(const float* heatmap, int64_t height, int64_t width,
                                    float threshold, int64_t nms_kernel,
                                    std::optional<int64_t> top_k) {
  std::vector<Peak> peaks;
  if (height == 0 || width == 0) {
    return peaks;
  }
  // Windows are clipped to the image, so a radius beyond it changes nothing.
  const int64_t radius = std::min(nms_kernel / 2, std::max(height, width));
  const int64_t row_radius = std::min(radius, width);
  const int64_t kernel = 2 * radius + 1;
  // Direct reads cost up to kernel^2 per candidate, cached rows about 4 * width per row.
  const int64_t max_direct = std::max<int64_t>(1, 4 * width / (kernel * kernel));
  // Window-max rows are cached in `slots` ring slots, keyed by row: a center test needs the
  // rows y - radius .. y + radius, which are distinct modulo slots.
  const int64_t slots = std::min(2 * radius + 1, height);
  constexpr int64_t kBandRows = 32;
  constexpr int64_t kChunk = 64;
  const int64_t num_bands = (height + kBandRows - 1) / kBandRows;
  std::vector<std::vector<Peak>> band_peaks(num_bands);
  // Per worker: window-max rows cached in ring slots, scratch, and a row's candidates.
  struct Scratch {
    std::vector<float> cache;
    std::vector<int64_t> cached_row;
    std::vector<float> padded;
    std::vector<int64_t> candidates;
  };
  const int64_t workers = claim_workers(num_bands);
  std::vector<Scratch> scratch(workers);
  claimed_parallel_for(num_bands, workers, [&](int64_t worker, int64_t band) {
    Scratch& own = scratch[worker];
    auto window_max = [&](int64_t r) -> const float* {
      if (own.cache.empty()) {
        own.cache.resize(slots * width);
        own.cached_row.assign(slots, -1);
        own.padded.resize(width + 2 * row_radius);
      }
      float* slot = own.cache.data() + (r % slots) * width;
      if (own.cached_row[r % slots] != r) {
        row_window_max(heatmap + r * width, width, row_radius, own.padded.data(), slot);
        own.cached_row[r % slots] = r;
      }
      return slot;
    };
    std::vector<Peak>& found = band_peaks[band];
    const int64_t y_end = std::min((band + 1) * kBandRows, height);
    for (int64_t y = band * kBandRows; y < y_end; ++y) {
      const float* __restrict row = heatmap + y * width;
      own.candidates.clear();
      for (int64_t chunk = 0; chunk < width; chunk += kChunk) {
        const int64_t chunk_end = std::min(chunk + kChunk, width);
        int any = 0;
        for (int64_t x = chunk; x < chunk_end; ++x) {
          any |= static_cast<int>(row[x] > 0.f) & static_cast<int>(!(row[x] <= threshold));
        }
        for (int64_t x = chunk; any != 0 && x < chunk_end; ++x) {
          if (row[x] > 0.f && !(row[x] <= threshold)) {
            own.candidates.push_back(x);
          }
        }
      }
      const bool direct = static_cast<int64_t>(own.candidates.size()) <= max_direct;
      for (const int64_t x : own.candidates) {
        const float v = row[x];
        bool is_peak = true;
        if (direct) {
          is_peak = is_window_max(heatmap, height, width, y, x, radius, v);
        } else {
          const int64_t r_end = std::min(y + radius, height - 1);
          for (int64_t r = std::max<int64_t>(y - radius, 0); r <= r_end && is_peak; ++r) {
            is_peak = window_max(r)[x] <= v;
          }
          if (is_peak && v == std::numeric_limits<float>::infinity()) {
            is_peak = !has_nan_in_window(heatmap, height, width, y, x, radius);
          }
        }
        if (is_peak) {
          found.push_back({y, x, v});
        }
      }
    }
  });
  for (const auto& band : band_peaks) {
    peaks.insert(peaks.end(), band.begin(), band.end());
  }
  if (top_k.has_value() && static_cast<int64_t>(peaks.size()) >= *top_k) {
    std::vector<float> scores(peaks.size());
    std::transform(peaks.begin(), peaks.end(), scores.begin(),
                   [](const Peak& p) { return p.score; });
    std::nth_element(scores.begin(), scores.begin() + (*top_k - 1), scores.end(),
                     std::greater<float>());
    const float kth = scores[*top_k - 1];
    peaks.erase(std::remove_if(peaks.begin(), peaks.end(),
                               [&](const Peak& p) { return !(p.score > kth); }),
                peaks.end());
  }
  return peaks;
}

} // namespace cpu
} // namespace panoptic2
