// Build-information ops. They take no tensors, so they are registered once for every
// backend (CompositeExplicitAutograd) instead of per dispatch key.

#include "build_info.h"

#include <ATen/Config.h>
#include <torch/library.h>

namespace panoptic2 {

int64_t cuda_version() {
#ifdef WITH_CUDA
  return detail::compiled_cudart_version();
#else
  return -1;
#endif
}

std::string compiler_version() {
  // clang also defines __GNUC__, so it is checked first.
#if defined(__clang__)
  return "clang " + std::to_string(__clang_major__) + "." +
      std::to_string(__clang_minor__);
#elif defined(__GNUC__)
  return "GCC " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__);
#elif defined(_MSC_VER)
  return "MSVC " + std::to_string(_MSC_FULL_VER);
#else
  return "unknown compiler";
#endif
}

bool has_cuda_kernels() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool parallel_cpu_kernels() {
#if AT_PARALLEL_OPENMP
  // at::parallel_for is then inlined here as an OpenMP loop, which a build without OpenMP
  // compiles as a plain serial loop.
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
#else
  return true; // the native and TBB backends run the loop inside libtorch
#endif
}

} // namespace panoptic2

TORCH_LIBRARY_IMPL(panoptic2, CompositeExplicitAutograd, m) {
  m.impl("cuda_version", &panoptic2::cuda_version);
  m.impl("compiler_version", &panoptic2::compiler_version);
  m.impl("has_cuda_kernels", &panoptic2::has_cuda_kernels);
  m.impl("parallel_cpu_kernels", &panoptic2::parallel_cpu_kernels);
}
