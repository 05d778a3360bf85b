#pragma once

#include <cstdint>
#include <string>

namespace panoptic2 {

// CUDART_VERSION of the toolkit the CUDA kernels were compiled with (e.g. 13000 for 13.0),
// or -1 when the extension was built without CUDA.
int64_t cuda_version();

// Host compiler that built the extension, e.g. "GCC 12.2" or "clang 17.0".
std::string compiler_version();

// Whether csrc/cuda/*.cu were compiled in.
bool has_cuda_kernels();

// Whether the CPU kernels' at::parallel_for loops can use several threads (with an OpenMP
// ATen, only when this library was compiled with OpenMP too; see setup.py).
bool parallel_cpu_kernels();

#ifdef WITH_CUDA
namespace detail {
// Defined in cuda/cuda_version.cu, so the value comes from the headers nvcc compiled with.
int64_t compiled_cudart_version();
} // namespace detail
#endif

} // namespace panoptic2
