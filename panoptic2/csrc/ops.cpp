// The one place where the schemas of all panoptic2 ops are declared.
//
// Kernels live in separate files and register themselves with TORCH_LIBRARY_IMPL on their
// dispatch key (cpu/*.cpp on CPU, cuda/*.cu on CUDA); Python reaches every op through
// torch.ops.panoptic2.* (see panoptic2/extension.py), never through this module's attributes.

#include <Python.h>
#include <torch/library.h>

// `import panoptic2._C` only has to load this shared library so that the static
// TORCH_LIBRARY registrations below run; the Python module itself is empty.
static PyModuleDef panoptic2_c_module = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "panoptic2 C++/CUDA ops; use them through torch.ops.panoptic2.*",
    -1,
    nullptr,
};

PyMODINIT_FUNC PyInit__C(void) {
  return PyModule_Create(&panoptic2_c_module);
}

TORCH_LIBRARY(panoptic2, m) {
  // Build-time facts, so Python can tell what this binary was compiled with.
  m.def("cuda_version() -> int");
  m.def("compiler_version() -> str");
  m.def("has_cuda_kernels() -> bool");
}
