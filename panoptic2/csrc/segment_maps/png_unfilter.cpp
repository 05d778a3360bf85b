// The COCO panoptic PNG decoder's inner loop: undoes the PNG row filters of an inflated
// 8-bit RGB / RGBA image and turns each pixel into its segment id R + 256 G + 256^2 B in the
// same pass, so no (H, W, 3) intermediate is made. Chunk parsing, CRCs and inflating stay in
// Python (panoptic2/utils/panoptic_png.py), which uses libdeflate, several times faster than
// the zlib inside libpng.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels.h"

namespace panoptic2 {
namespace segment_maps {
namespace {

// The Paeth predictor of the PNG specification (section 9.4): the neighbour (left, up,
// upper-left) closest to left + up - upper_left, ties in that order.
inline uint8_t paeth(int left, int up, int upper_left) {
  const int estimate = left + up - upper_left;
  const int to_left = std::abs(estimate - left);
  const int to_up = std::abs(estimate - up);
  const int to_upper_left = std::abs(estimate - upper_left);
  if (to_left <= to_up && to_left <= to_upper_left) {
    return static_cast<uint8_t>(left);
  }
  return static_cast<uint8_t>(to_up <= to_upper_left ? up : upper_left);
}

// Reconstructs one row into `row` from its filtered bytes `filtered`; `prior` is the previous
// reconstructed row (all zeros above the first row). The byte to the left (`bpp` back) is
// carried in registers, one per channel: reading it back from memory right after writing it
// would serialise every byte on store-to-load forwarding.
template <int64_t bpp>
void unfilter_row(uint8_t filter, const uint8_t* filtered, const uint8_t* prior, uint8_t* row,
                  int64_t length) {
  uint8_t left[bpp] = {};
  uint8_t upper_left[bpp] = {};
  switch (filter) {
    case 0:  // None
      std::copy_n(filtered, length, row);
      break;
    case 1:  // Sub
      for (int64_t i = 0; i < length; i += bpp) {
        for (int64_t c = 0; c < bpp; ++c) {
          left[c] = static_cast<uint8_t>(filtered[i + c] + left[c]);
          row[i + c] = left[c];
        }
      }
      break;
    case 2:  // Up
      for (int64_t i = 0; i < length; ++i) {
        row[i] = static_cast<uint8_t>(filtered[i] + prior[i]);
      }
      break;
    case 3:  // Average
      for (int64_t i = 0; i < length; i += bpp) {
        for (int64_t c = 0; c < bpp; ++c) {
          left[c] = static_cast<uint8_t>(filtered[i + c] + ((left[c] + prior[i + c]) >> 1));
          row[i + c] = left[c];
        }
      }
      break;
    case 4:  // Paeth
      for (int64_t i = 0; i < length; i += bpp) {
        // Where the pixel above equals the one above-left (inside a segment of the row
        // above: most pixels of a segment map), the predictor is the left pixel whatever
        // its value, so the dependent chain is one add instead of the whole predictor.
        bool flat = true;
        for (int64_t c = 0; c < bpp; ++c) {
          flat &= prior[i + c] == upper_left[c];
        }
        if (flat) {
          for (int64_t c = 0; c < bpp; ++c) {
            left[c] = static_cast<uint8_t>(filtered[i + c] + left[c]);
            row[i + c] = left[c];
          }
          continue;  // upper_left already equals this pixel's up
        }
        for (int64_t c = 0; c < bpp; ++c) {
          const uint8_t up = prior[i + c];
          left[c] = static_cast<uint8_t>(filtered[i + c] + paeth(left[c], up, upper_left[c]));
          upper_left[c] = up;
          row[i + c] = left[c];
        }
      }
      break;
  }
}

// Segment ids of one reconstructed row: R + 256 G + 256^2 B per pixel. On little-endian
// machines one 4-byte load per pixel gives R | G << 8 | B << 16 | next << 24, twice as fast
// as three byte loads; `row` must then have one readable byte after its end.
template <int64_t bpp>
void row_to_ids(const uint8_t* row, int64_t width, uint32_t* ids) {
#if defined(_WIN32) || (defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  for (int64_t x = 0; x < width; ++x) {
    uint32_t word;
    std::memcpy(&word, row + x * bpp, sizeof(word));
    ids[x] = word & 0xFFFFFFu;
  }
#else
  for (int64_t x = 0; x < width; ++x) {
    const uint8_t* pixel = row + x * bpp;
    ids[x] = static_cast<uint32_t>(pixel[0]) | (static_cast<uint32_t>(pixel[1]) << 8) |
             (static_cast<uint32_t>(pixel[2]) << 16);
  }
#endif
}

template <int64_t bpp>
int64_t unfilter_to_ids(const uint8_t* src, int64_t height, int64_t width, uint32_t* out,
                        int* bad_filter) {
  const int64_t stride = width * bpp;
  // Two row buffers, the row being reconstructed and the one above it, and one byte of
  // padding for row_to_ids's last 4-byte load.
  std::vector<uint8_t> rows(2 * static_cast<size_t>(stride) + 1, 0);
  uint8_t* prior = rows.data();
  uint8_t* current = rows.data() + stride;
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* line = src + y * (stride + 1);
    if (line[0] > 4) {
      *bad_filter = line[0];
      return y;
    }
    unfilter_row<bpp>(line[0], line + 1, prior, current, stride);
    row_to_ids<bpp>(current, width, out + y * width);
    std::swap(prior, current);
  }
  return -1;
}

}  // namespace

int64_t png_unfilter_to_ids(const uint8_t* raw, int64_t height, int64_t width, int channels,
                            uint32_t* ids, int* bad_filter) {
  if (channels == 3) {
    return unfilter_to_ids<3>(raw, height, width, ids, bad_filter);
  }
  return unfilter_to_ids<4>(raw, height, width, ids, bad_filter);
}

}  // namespace segment_maps
}  // namespace panoptic2
