// CPU kernel of the COCO panoptic PNG decoder: undoes the PNG row filters of an inflated
// 8-bit RGB / RGBA image and turns each pixel into its segment id R + 256 G + 256^2 B in the
// same pass, so no (H, W, 3) intermediate is made. Chunk parsing, CRCs and inflating stay in
// Python (panoptic2/data/panoptic_label.py), which uses libdeflate, several times faster than
// the zlib inside libpng.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace panoptic2 {
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
void row_to_ids(const uint8_t* row, int64_t width, int32_t* ids) {
#if defined(_WIN32) || (defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  for (int64_t x = 0; x < width; ++x) {
    uint32_t word;
    std::memcpy(&word, row + x * bpp, sizeof(word));
    ids[x] = static_cast<int32_t>(word & 0xFFFFFFu);
  }
#else
  for (int64_t x = 0; x < width; ++x) {
    const uint8_t* pixel = row + x * bpp;
    ids[x] = static_cast<int32_t>(pixel[0]) | (static_cast<int32_t>(pixel[1]) << 8) |
             (static_cast<int32_t>(pixel[2]) << 16);
  }
#endif
}

template <int64_t bpp>
void unfilter_to_ids(const uint8_t* src, int64_t height, int64_t width, int32_t* out) {
  const int64_t stride = width * bpp;
  // Two row buffers, the row being reconstructed and the one above it, and one byte of
  // padding for row_to_ids's last 4-byte load.
  std::vector<uint8_t> rows(2 * static_cast<size_t>(stride) + 1, 0);
  uint8_t* prior = rows.data();
  uint8_t* current = rows.data() + stride;
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* line = src + y * (stride + 1);
    TORCH_CHECK(line[0] <= 4, "panoptic2::png_unfilter_to_ids: invalid filter type ",
                static_cast<int>(line[0]), " on row ", y);
    unfilter_row<bpp>(line[0], line + 1, prior, current, stride);
    row_to_ids<bpp>(current, width, out + y * width);
    std::swap(prior, current);
  }
}

at::Tensor png_unfilter_to_ids_cpu(const at::Tensor& raw, int64_t height, int64_t width,
                                   int64_t channels) {
  TORCH_CHECK(raw.dim() == 1 && raw.scalar_type() == at::kByte,
              "panoptic2::png_unfilter_to_ids: raw must be a 1-D uint8 tensor, got ",
              raw.scalar_type(), " of shape ", raw.sizes());
  TORCH_CHECK(channels == 3 || channels == 4,
              "panoptic2::png_unfilter_to_ids: channels must be 3 (RGB) or 4 (RGBA), got ",
              channels);
  TORCH_CHECK(height >= 0 && width >= 0,
              "panoptic2::png_unfilter_to_ids: negative size ", height, "x", width);
  const int64_t stride = width * channels;
  TORCH_CHECK(raw.numel() == height * (stride + 1),
              "panoptic2::png_unfilter_to_ids: the inflated image has ", raw.numel(),
              " bytes, but a ", width, "x", height, " image with ", channels,
              " channels needs ", height * (stride + 1));

  const at::Tensor raw_c = raw.contiguous();
  at::Tensor ids = at::empty({height, width}, raw.options().dtype(at::kInt));
  if (channels == 3) {
    unfilter_to_ids<3>(raw_c.data_ptr<uint8_t>(), height, width, ids.data_ptr<int32_t>());
  } else {
    unfilter_to_ids<4>(raw_c.data_ptr<uint8_t>(), height, width, ids.data_ptr<int32_t>());
  }
  return ids;
}

}  // namespace

TORCH_LIBRARY_IMPL(panoptic2, CPU, m) {
  m.impl("png_unfilter_to_ids", &png_unfilter_to_ids_cpu);
}

}  // namespace panoptic2
