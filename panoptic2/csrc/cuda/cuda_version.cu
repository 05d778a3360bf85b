// Compiled by nvcc only when the extension is built WITH_CUDA. Keeping the version query in
// a .cu file means the reported value is the one of the headers nvcc actually used.

#include <cuda_runtime_api.h>

#include "build_info.h"

namespace panoptic2 {
namespace detail {

int64_t compiled_cudart_version() {
  return CUDART_VERSION;
}

} // namespace detail
} // namespace panoptic2
