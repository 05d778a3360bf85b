// CUDA kernels of Panoptic-DeepLab post-processing: center grouping and majority-vote merge.
//
// Everything stays on the device: no host copies, no synchronisation, and no caps on the
// number of centers or classes (buffers are sized from the inputs' shapes). Outputs equal
// the PyTorch reference and the CPU kernels bit for bit, so float arithmetic uses the
// explicitly rounded intrinsics (__fadd_rn, __fsub_rn, __fmul_rn), which nvcc never fuses
// into FMAs, in the reference's order of operations.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <math_constants.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace panoptic2 {
namespace {

constexpr int kThreads = 256;
constexpr int kCenterTile = 512; // centers staged in shared memory per pass

int64_t num_blocks(int64_t n) {
  return (n + kThreads - 1) / kThreads;
}

void check_map(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t height,
               int64_t width) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == height && t.size(1) == width, "panoptic2: ", name,
              " must have shape (", height, ", ", width, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "panoptic2: ", name, " must be ", dtype, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.is_cuda(), "panoptic2: ", name, " must be a CUDA tensor");
}

// One thread per pixel; the centers are scanned in index order in shared-memory tiles.
__global__ void group_pixels_kernel(const int64_t* __restrict__ centers, int64_t num_centers,
                                    const float* __restrict__ offsets,
                                    const bool* __restrict__ thing_mask, int64_t height,
                                    int64_t width, int64_t* __restrict__ out) {
  __shared__ float tile_y[kCenterTile];
  __shared__ float tile_x[kCenterTile];
  const int64_t num_pixels = height * width;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = p < num_pixels && thing_mask[p];
  float py = 0.f;
  float px = 0.f;
  if (active) {
    py = __fadd_rn(static_cast<float>(p / width), offsets[p]);
    px = __fadd_rn(static_cast<float>(p % width), offsets[num_pixels + p]);
  }
  float best = CUDART_INF_F;
  int64_t best_index = 0; // also the answer when every distance is inf or NaN
  for (int64_t base = 0; base < num_centers; base += kCenterTile) {
    const int64_t count = min(static_cast<int64_t>(kCenterTile), num_centers - base);
    __syncthreads(); // the previous tile is no longer read
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      tile_y[i] = static_cast<float>(centers[2 * (base + i)]);
      tile_x[i] = static_cast<float>(centers[2 * (base + i) + 1]);
    }
    __syncthreads();
    if (active) {
      for (int64_t i = 0; i < count; ++i) {
        const float ey = __fsub_rn(tile_y[i], py);
        const float ex = __fsub_rn(tile_x[i], px);
        const float d = __fadd_rn(__fmul_rn(ey, ey), __fmul_rn(ex, ex));
        if (d < best) {
          best = d;
          best_index = base + i;
        }
      }
    }
  }
  if (p < num_pixels) {
    out[p] = active ? best_index + 1 : 0;
  }
}

// Histogram row for a pixel (k for a thing pixel of instance k, else 0), or -1 when its
// values are out of range (the Python wrapper validates; this only avoids stray writes).
__device__ int64_t histogram_cell(int64_t c, int64_t k, bool mask, int64_t num_classes,
                                  int64_t num_instances) {
  if (c < 0 || c >= num_classes || k < 0 || k > num_instances) {
    return -1;
  }
  return (mask ? k : 0) * num_classes + c;
}

// One thread per pixel. Lanes of a warp that hit the same cell (large stuff regions) are
// combined first, so a big region costs one atomic per warp instead of one per pixel.
__global__ void histogram_kernel(const int64_t* __restrict__ sem, const int64_t* __restrict__ ins,
                                 const bool* __restrict__ thing_mask, int64_t num_pixels,
                                 int64_t num_classes, int64_t num_instances,
                                 unsigned long long* __restrict__ hist) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t cell = p < num_pixels
      ? histogram_cell(sem[p], ins[p], thing_mask[p], num_classes, num_instances)
      : -1;
  // Every lane reaches this point (no early return), as __match_any_sync requires.
  const unsigned same = __match_any_sync(0xffffffffu, cell);
  const int lane = threadIdx.x % 32;
  if (cell >= 0 && lane == __ffs(same) - 1) {
    atomicAdd(hist + cell, static_cast<unsigned long long>(__popc(same)));
  }
}

// One thread per instance k in [1, K]: majority class (first maximum = smaller class), or
// -1 when the instance has no thing pixels.
__global__ void vote_kernel(const unsigned long long* __restrict__ hist, int64_t num_classes,
                            int64_t num_instances, int64_t* __restrict__ instance_class) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x + 1;
  if (k > num_instances) {
    return;
  }
  const unsigned long long* row = hist + k * num_classes;
  unsigned long long best_count = 0;
  int64_t best = -1;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (row[c] > best_count) {
      best_count = row[c];
      best = c;
    }
  }
  instance_class[k] = best;
}

// One thread per instance: its panoptic label, numbering each class's instances from 1 in
// center order (the number is 1 + the non-empty earlier instances of the same class).
// Threads past the instances fill the per-class stuff labels instead.
__global__ void label_kernel(const unsigned long long* __restrict__ hist,
                             const int64_t* __restrict__ instance_class,
                             const bool* __restrict__ is_thing_class, int64_t num_classes,
                             int64_t num_instances, int64_t label_divisor, int64_t stuff_area,
                             int64_t void_label, int64_t* __restrict__ instance_label,
                             int64_t* __restrict__ class_label) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < num_instances) {
    const int64_t k = i + 1;
    const int64_t c = instance_class[k];
    if (c >= 0) {
      int64_t number = 1;
      for (int64_t j = 1; j < k; ++j) {
        number += instance_class[j] == c;
      }
      instance_label[k] = c * label_divisor + number;
    }
  } else if (i < num_instances + num_classes) {
    const int64_t c = i - num_instances;
    const bool keep = !is_thing_class[c] &&
        static_cast<long long>(hist[c]) >= static_cast<long long>(stuff_area);
    class_label[c] = keep ? c * label_divisor : void_label;
  }
}

__global__ void paint_kernel(const int64_t* __restrict__ sem, const int64_t* __restrict__ ins,
                             const bool* __restrict__ thing_mask, int64_t num_pixels,
                             int64_t num_classes, int64_t num_instances,
                             const int64_t* __restrict__ instance_label,
                             const int64_t* __restrict__ class_label, int64_t void_label,
                             int64_t* __restrict__ out) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= num_pixels) {
    return;
  }
  const int64_t c = sem[p];
  const int64_t k = ins[p];
  if (c < 0 || c >= num_classes || k < 0 || k > num_instances) {
    out[p] = void_label;
  } else if (thing_mask[p] && k > 0) {
    out[p] = instance_label[k];
  } else {
    out[p] = class_label[c];
  }
}

at::Tensor group_pixels_cuda(const at::Tensor& centers, const at::Tensor& offsets,
                             const at::Tensor& thing_mask) {
  TORCH_CHECK(centers.dim() == 2 && centers.size(1) == 2 && centers.scalar_type() == at::kLong,
              "panoptic2::group_pixels: centers must be (K, 2) int64, got ", centers.sizes(),
              " ", centers.scalar_type());
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == 2 && offsets.scalar_type() == at::kFloat,
              "panoptic2::group_pixels: offsets must be (2, H, W) float32, got ",
              offsets.sizes(), " ", offsets.scalar_type());
  TORCH_CHECK(centers.is_cuda() && offsets.is_cuda() &&
                  centers.device() == offsets.device(),
              "panoptic2::group_pixels: centers and offsets must be on the same CUDA device");
  const int64_t height = offsets.size(1);
  const int64_t width = offsets.size(2);
  check_map(thing_mask, "thing_mask", at::kBool, height, width);
  const c10::cuda::CUDAGuard guard(offsets.device());

  at::Tensor out = at::empty({height, width}, offsets.options().dtype(at::kLong));
  const int64_t num_pixels = height * width;
  if (num_pixels == 0) {
    return out;
  }
  const at::Tensor centers_c = centers.contiguous();
  const at::Tensor offsets_c = offsets.contiguous();
  const at::Tensor mask_c = thing_mask.contiguous();
  group_pixels_kernel<<<num_blocks(num_pixels), kThreads, 0,
                        c10::cuda::getCurrentCUDAStream()>>>(
      centers_c.data_ptr<int64_t>(), centers_c.size(0), offsets_c.data_ptr<float>(),
      mask_c.data_ptr<bool>(), height, width, out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor merge_semantic_and_instance_cuda(const at::Tensor& sem_seg, const at::Tensor& ins_seg,
                                            const at::Tensor& thing_mask,
                                            const at::Tensor& is_thing_class,
                                            int64_t num_instances, int64_t label_divisor,
                                            int64_t stuff_area, int64_t void_label) {
  TORCH_CHECK(sem_seg.dim() == 2,
              "panoptic2::merge_semantic_and_instance: sem_seg must be (H, W), got ",
              sem_seg.sizes());
  const int64_t height = sem_seg.size(0);
  const int64_t width = sem_seg.size(1);
  check_map(sem_seg, "sem_seg", at::kLong, height, width);
  check_map(ins_seg, "ins_seg", at::kLong, height, width);
  check_map(thing_mask, "thing_mask", at::kBool, height, width);
  TORCH_CHECK(is_thing_class.dim() == 1 && is_thing_class.scalar_type() == at::kBool &&
                  is_thing_class.is_cuda(),
              "panoptic2::merge_semantic_and_instance: is_thing_class must be a (C,) bool CUDA "
              "tensor, got ", is_thing_class.sizes(), " ", is_thing_class.scalar_type());
  TORCH_CHECK(num_instances >= 0,
              "panoptic2::merge_semantic_and_instance: num_instances must be >= 0, got ",
              num_instances);
  const c10::cuda::CUDAGuard guard(sem_seg.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

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
  const auto long_options = sem_seg.options();
  // Counts in int64 storage, used as unsigned long long for atomicAdd (same width).
  at::Tensor hist = at::zeros({(num_instances + 1) * num_classes}, long_options);
  at::Tensor instance_class = at::full({num_instances + 1}, -1, long_options);
  at::Tensor instance_label = at::full({num_instances + 1}, void_label, long_options);
  at::Tensor class_label = at::empty({std::max<int64_t>(num_classes, 1)}, long_options);
  auto* hist_ptr = reinterpret_cast<unsigned long long*>(hist.data_ptr<int64_t>());

  histogram_kernel<<<num_blocks(num_pixels), kThreads, 0, stream>>>(
      sem_c.data_ptr<int64_t>(), ins_c.data_ptr<int64_t>(), mask_c.data_ptr<bool>(),
      num_pixels, num_classes, num_instances, hist_ptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (num_instances > 0) {
    vote_kernel<<<num_blocks(num_instances), kThreads, 0, stream>>>(
        hist_ptr, num_classes, num_instances, instance_class.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (num_instances + num_classes > 0) {
    label_kernel<<<num_blocks(num_instances + num_classes), kThreads, 0, stream>>>(
        hist_ptr, instance_class.data_ptr<int64_t>(), is_thing_c.data_ptr<bool>(), num_classes,
        num_instances, label_divisor, stuff_area, void_label, instance_label.data_ptr<int64_t>(),
        class_label.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  paint_kernel<<<num_blocks(num_pixels), kThreads, 0, stream>>>(
      sem_c.data_ptr<int64_t>(), ins_c.data_ptr<int64_t>(), mask_c.data_ptr<bool>(), num_pixels,
      num_classes, num_instances, instance_label.data_ptr<int64_t>(),
      class_label.data_ptr<int64_t>(), void_label, out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

} // namespace

TORCH_LIBRARY_IMPL(panoptic2, CUDA, m) {
  m.impl("group_pixels", &group_pixels_cuda);
  m.impl("merge_semantic_and_instance", &merge_semantic_and_instance_cuda);
}

} // namespace panoptic2
