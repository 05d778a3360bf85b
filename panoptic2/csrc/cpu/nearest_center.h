// Exact nearest-center search of Panoptic-DeepLab grouping, shared by the CPU kernels.
//
// The answer must be the one of the exhaustive scan in the PyTorch reference
// (panoptic2/ops/_reference.py): in float32, d_j = fl(fl(ey * ey) + fl(ex * ex)) with
// ey = fl(cy_j - py), ex = fl(cx_j - px); the smallest d_j wins, ties (and a vote whose
// distances are all inf or NaN) go to the smaller index. Two exact shortcuts give it:
//
//  * A grid over vote positions. Each cell lists, in index order, every center that may be
//    nearest, or tie, for some point of the cell: with U the smallest over centers of the
//    largest distance to the cell, a center whose smallest distance to the cell exceeds
//    U * (1 + kSlack) is strictly farther than the best one after float32 rounding too (each
//    d_j is within a relative 4 * 2^-24 of the exact distance, far below kSlack), so it can
//    neither win nor tie. Scanning the list in index order with a strict < therefore gives
//    the exhaustive answer, ties included.
//  * Centers sorted by y, scanned outwards from the vote's row, for votes outside the grid
//    (offsets pointing far away, inf, NaN) and for cells the grid gives up on (no center
//    within kMaxRings rings, too many candidates, distances near float32 overflow):
//    fl(cy - py) is monotonic in cy and fl(yy + xx) >= yy, so a center whose y term alone
//    exceeds the best distance is strictly farther and the scan stops there.

#pragma once

#include <ATen/Parallel.h>
#include <c10/macros/Macros.h>

#include "cpu/claimed_parallel_for.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace panoptic2 {
namespace cpu {

class NearestCenters {
 public:
  // centers: K (y, x) int64 pairs, row-major, in center order; read only here.
  NearestCenters(const int64_t* centers, int64_t num_centers, int64_t height, int64_t width)
      : num_centers_(num_centers) {
    center_y_.resize(num_centers);
    center_x_.resize(num_centers);
    for (int64_t j = 0; j < num_centers; ++j) {
      // The reference converts the int64 coordinates to float32 first.
      center_y_[j] = static_cast<float>(centers[2 * j]);
      center_x_[j] = static_cast<float>(centers[2 * j + 1]);
    }
    build_sorted();
    if (num_centers > kExhaustiveCenters && height > 0 && width > 0) {
      build_grid(height, width);
    }
  }

  int64_t num_centers() const {
    return num_centers_;
  }

  // Index (0-based) of the center nearest to the vote (py, px); requires num_centers() > 0.
  int64_t nearest(float py, float px) const {
    if (num_centers_ <= kExhaustiveCenters) {
      return scan_in_order(py, px);
    }
    const double gy = (static_cast<double>(py) - grid_y0_) * inv_cell_;
    const double gx = (static_cast<double>(px) - grid_x0_) * inv_cell_;
    // False for NaN and for votes outside the grid.
    if (gy >= 0.0 && gy < static_cast<double>(grid_rows_) && gx >= 0.0 &&
        gx < static_cast<double>(grid_cols_)) {
      const int64_t cell = static_cast<int64_t>(gy) * grid_cols_ + static_cast<int64_t>(gx);
      const int64_t begin = cell_begin_[cell];
      const int64_t end = cell_begin_[cell + 1];
      if (!cell_sorted_scan_[cell]) {
        float best = std::numeric_limits<float>::infinity();
        int64_t best_index = 0;
        for (int64_t e = begin; e < end; ++e) {
          const Entry& entry = entries_[e];
          const float ey = entry.y - py;
          const float ex = entry.x - px;
          const float yy = ey * ey;
          const float xx = ex * ex;
          const float d = yy + xx;
          const bool closer = d < best; // strict: an equal later center never wins a tie
          best = closer ? d : best;
          best_index = closer ? entry.index : best_index;
        }
        return best_index;
      }
    }
    return scan_sorted(py, px);
  }

 private:
  struct Entry {
    float y;
    float x;
    int64_t index;
  };

  // Up to this many centers, a scan of all of them in index order is cheapest.
  static constexpr int64_t kExhaustiveCenters = 4;
  // Relative margin on the candidate bound; the float32 error of d is below 2.4e-7.
  static constexpr double kSlack = 1.0 / 1024;
  // Absolute margins: on distances (float32 underflow) and on cell bounds (pixels).
  static constexpr double kDistanceSlack = 1e-6;
  static constexpr double kCellMargin = 1.0 / 64;
  // Above this bound a cell's distances could overflow float32: its votes scan all centers.
  static constexpr double kLargestBound = 1e30;
  // A cell whose candidates are not settled within these rings of neighbouring cells, or
  // that keeps more candidates than this, leaves its votes to the sorted scan.
  static constexpr int64_t kMaxRings = 8;
  static constexpr int64_t kMaxCandidates = 64;

  int64_t scan_in_order(float py, float px) const {
    float best = std::numeric_limits<float>::infinity();
    int64_t best_index = 0;
    for (int64_t j = 0; j < num_centers_; ++j) {
      const float ey = center_y_[j] - py;
      const float ex = center_x_[j] - px;
      const float yy = ey * ey;
      const float xx = ex * ex;
      const float d = yy + xx;
      if (d < best) {
        best = d;
        best_index = j;
      }
    }
    return best_index;
  }

  // Out of line: the grid lookup above stays small enough to inline.
  C10_NOINLINE int64_t scan_sorted(float py, float px) const {
    float best = std::numeric_limits<float>::infinity();
    int64_t best_index = 0;
    auto visit = [&](int64_t s) -> bool {
      const float ey = sorted_y_[s] - py;
      const float yy = ey * ey;
      if (yy > best) {
        return false;
      }
      const float ex = sorted_x_[s] - px;
      const float xx = ex * ex;
      const float d = yy + xx;
      const int64_t index = order_[s];
      if (d < best || (d == best && index < best_index)) {
        best = d;
        best_index = index;
      }
      return true;
    };
    const int64_t start =
        std::lower_bound(sorted_y_.begin(), sorted_y_.end(), py) - sorted_y_.begin();
    for (int64_t s = start; s < num_centers_ && visit(s); ++s) {
    }
    for (int64_t s = start - 1; s >= 0 && visit(s); --s) {
    }
    return best_index;
  }

  void build_sorted() {
    order_.resize(num_centers_);
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int64_t a, int64_t b) { return center_y_[a] < center_y_[b]; });
    sorted_y_.resize(num_centers_);
    sorted_x_.resize(num_centers_);
    for (int64_t s = 0; s < num_centers_; ++s) {
      sorted_y_[s] = center_y_[order_[s]];
      sorted_x_[s] = center_x_[order_[s]];
    }
  }

  // Square cells of a power-of-two side, about half the mean spacing of the centers, over
  // the image and a one-cell border.
  void build_grid(int64_t height, int64_t width) {
    const double spacing = std::sqrt(static_cast<double>(height) * static_cast<double>(width) /
                                     static_cast<double>(num_centers_));
    int64_t cell = 4;
    while (cell < 1024 && 2.0 * static_cast<double>(cell) * 2.0 <= spacing) {
      cell *= 2;
    }
    cell_ = static_cast<double>(cell);
    inv_cell_ = 1.0 / cell_;
    grid_y0_ = -cell_;
    grid_x0_ = -cell_;
    grid_rows_ = (height + cell - 1) / cell + 2;
    grid_cols_ = (width + cell - 1) / cell + 2;
    const int64_t num_cells = grid_rows_ * grid_cols_;

    // Centers bucketed by cell (index order within a bucket); centers outside the grid
    // are checked by every cell.
    std::vector<int64_t> bucket_of(num_centers_, -1);
    std::vector<int64_t> bucket_begin(num_cells + 1, 0);
    for (int64_t j = 0; j < num_centers_; ++j) {
      const double gy = (static_cast<double>(center_y_[j]) - grid_y0_) * inv_cell_;
      const double gx = (static_cast<double>(center_x_[j]) - grid_x0_) * inv_cell_;
      if (gy >= 0.0 && gy < static_cast<double>(grid_rows_) && gx >= 0.0 &&
          gx < static_cast<double>(grid_cols_)) {
        bucket_of[j] = static_cast<int64_t>(gy) * grid_cols_ + static_cast<int64_t>(gx);
        ++bucket_begin[bucket_of[j] + 1];
      } else {
        outside_.push_back(j);
      }
    }
    std::partial_sum(bucket_begin.begin(), bucket_begin.end(), bucket_begin.begin());
    std::vector<int64_t> bucket(bucket_begin.back());
    std::vector<int64_t> fill(bucket_begin.begin(), bucket_begin.end() - 1);
    for (int64_t j = 0; j < num_centers_; ++j) {
      if (bucket_of[j] >= 0) {
        bucket[fill[bucket_of[j]]++] = j;
      }
    }

    // Candidates of each cell, built in parallel over grid rows, then concatenated.
    std::vector<std::vector<Entry>> row_entries(grid_rows_);
    std::vector<std::vector<int64_t>> row_counts(grid_rows_);
    cell_sorted_scan_.assign(num_cells, 0);
    const int64_t workers = claim_workers(grid_rows_);
    // Per worker: (center, smallest distance) pairs of the cell at hand.
    std::vector<std::vector<std::pair<int64_t, double>>> found_by_worker(workers);
    claimed_parallel_for(grid_rows_, workers, [&](int64_t worker, int64_t gy) {
      std::vector<std::pair<int64_t, double>>& found = found_by_worker[worker];
      row_counts[gy].assign(grid_cols_, 0);
      for (int64_t gx = 0; gx < grid_cols_; ++gx) {
        const bool settled = cell_candidates(gy, gx, bucket_begin, bucket, found);
        if (!settled) {
          cell_sorted_scan_[gy * grid_cols_ + gx] = 1;
          continue;
        }
        std::sort(found.begin(), found.end());
        for (const auto& candidate : found) {
          const int64_t j = candidate.first;
          row_entries[gy].push_back({center_y_[j], center_x_[j], j});
        }
        row_counts[gy][gx] = static_cast<int64_t>(found.size());
      }
    });
    cell_begin_.assign(num_cells + 1, 0);
    int64_t total = 0;
    for (int64_t gy = 0; gy < grid_rows_; ++gy) {
      for (int64_t gx = 0; gx < grid_cols_; ++gx) {
        cell_begin_[gy * grid_cols_ + gx] = total;
        total += row_counts[gy][gx];
      }
    }
    cell_begin_[num_cells] = total;
    entries_.reserve(total);
    for (const auto& row : row_entries) {
      entries_.insert(entries_.end(), row.begin(), row.end());
    }
  }

  // Fills `found` with the candidates of cell (gy, gx); false when the cell is left to the
  // sorted scan.
  bool cell_candidates(int64_t gy, int64_t gx, const std::vector<int64_t>& bucket_begin,
                       const std::vector<int64_t>& bucket,
                       std::vector<std::pair<int64_t, double>>& found) const {
    // The cell's bounds, widened by a margin so that rounding in the cell lookup never
    // places a vote outside the region the candidates were chosen for.
    const double y_low = grid_y0_ + static_cast<double>(gy) * cell_ - kCellMargin;
    const double y_high = y_low + cell_ + 2 * kCellMargin;
    const double x_low = grid_x0_ + static_cast<double>(gx) * cell_ - kCellMargin;
    const double x_high = x_low + cell_ + 2 * kCellMargin;
    double bound = std::numeric_limits<double>::infinity(); // U: min over centers of dmax
    found.clear();
    auto consider = [&](int64_t j) {
      const double cy = center_y_[j];
      const double cx = center_x_[j];
      const double near_y = std::max({y_low - cy, 0.0, cy - y_high});
      const double near_x = std::max({x_low - cx, 0.0, cx - x_high});
      const double far_y = std::max(std::abs(cy - y_low), std::abs(cy - y_high));
      const double far_x = std::max(std::abs(cx - x_low), std::abs(cx - x_high));
      bound = std::min(bound, far_y * far_y + far_x * far_x);
      found.emplace_back(j, near_y * near_y + near_x * near_x);
    };
    for (const int64_t j : outside_) {
      consider(j);
    }
    const int64_t last_ring =
        std::max({gy, grid_rows_ - 1 - gy, gx, grid_cols_ - 1 - gx}); // covers the grid
    bool settled = false;
    for (int64_t ring = 0; ring <= std::min(last_ring, kMaxRings); ++ring) {
      for (int64_t ry = std::max<int64_t>(gy - ring, 0);
           ry <= std::min(gy + ring, grid_rows_ - 1); ++ry) {
        const bool edge_row = ry == gy - ring || ry == gy + ring;
        const int64_t step = edge_row ? 1 : 2 * ring;
        for (int64_t rx = gx - ring; rx <= gx + ring; rx += std::max<int64_t>(step, 1)) {
          if (rx < 0 || rx >= grid_cols_) {
            continue;
          }
          const int64_t b = ry * grid_cols_ + rx;
          for (int64_t i = bucket_begin[b]; i < bucket_begin[b + 1]; ++i) {
            consider(bucket[i]);
          }
        }
      }
      // Any center beyond this ring is at least `ring` whole cells away from the cell.
      const double gap = std::max(static_cast<double>(ring) * cell_ - 2 * kCellMargin, 0.0);
      if (ring == last_ring || gap * gap > bound * (1 + kSlack) + kDistanceSlack) {
        settled = true;
        break;
      }
    }
    if (!settled || bound > kLargestBound) {
      return false;
    }
    const double limit = bound * (1 + kSlack) + kDistanceSlack;
    found.erase(std::remove_if(found.begin(), found.end(),
                               [&](const std::pair<int64_t, double>& c) {
                                 return c.second > limit;
                               }),
                found.end());
    return static_cast<int64_t>(found.size()) <= kMaxCandidates;
  }

  int64_t num_centers_;
  std::vector<float> center_y_;
  std::vector<float> center_x_;
  // Sorted scan: centers by (y, index).
  std::vector<int64_t> order_;
  std::vector<float> sorted_y_;
  std::vector<float> sorted_x_;
  // Grid.
  double cell_ = 1.0;
  double inv_cell_ = 1.0;
  double grid_y0_ = 0.0;
  double grid_x0_ = 0.0;
  int64_t grid_rows_ = 0;
  int64_t grid_cols_ = 0;
  std::vector<int64_t> outside_;
  std::vector<int64_t> cell_begin_;
  std::vector<uint8_t> cell_sorted_scan_;
  std::vector<Entry> entries_;
};

} // namespace cpu
} // namespace panoptic2
