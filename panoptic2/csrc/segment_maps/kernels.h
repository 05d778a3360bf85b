// The segment-map kernels of data reading and evaluation: plain C++ on raw buffers, with no
// torch and no Python. module.cpp exposes them as the CPython module panoptic2._segment_maps
// (wrapped by panoptic2/ops/segments.py), so that reading panoptic PNGs and counting PQ pixel
// pairs never needs torch: the PQ tool and panoptic2.evaluation.panoptic_quality start in a
// fraction of a second.

#pragma once

#include <cstdint>
#include <vector>

namespace panoptic2 {
namespace segment_maps {

// Undoes the row filters of an inflated 8-bit, non-interlaced RGB (channels 3) or RGBA (4)
// PNG image and writes each pixel's segment id R + 256 G + 256^2 B (alpha ignored).
//
// raw: height * (1 + width * channels) bytes, each row a filter byte and its pixels.
// ids: height * width outputs, row-major.
// Returns -1 on success, else the index of the first row whose filter byte is not 0..4
// (its value is then stored in *bad_filter); rows before it are written.
int64_t png_unfilter_to_ids(const uint8_t* raw, int64_t height, int64_t width, int channels,
                            uint32_t* ids, int* bad_filter);

// Element type of a segment-id buffer.
enum class IdType { kInt32 = 0, kUInt32 = 1, kInt64 = 2 };

// Every distinct (gt id, pred id) pixel pair of two maps of n pixels, once, in raster order
// of its first pixel, with its number of pixels. Ids are widened to int64 (uint32 ids keep
// their unsigned value).
struct PairCounts {
  std::vector<int64_t> gt, pred, counts;
};
PairCounts count_segment_pairs(const void* gt, IdType gt_type, const void* pred,
                               IdType pred_type, int64_t n);

}  // namespace segment_maps
}  // namespace panoptic2
