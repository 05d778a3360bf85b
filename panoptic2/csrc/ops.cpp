// The one place where the schemas of all panoptic2 ops are declared.
//
// Kernels live in separate files and register themselves with TORCH_LIBRARY_IMPL on their
// dispatch key (cpu/*.cpp on CPU, cuda/*.cu on CUDA); Python reaches every op through
// torch.ops.panoptic2.* (see panoptic2/ops/: extension.py loads this library and checks that
// every op below is registered), never through this module's attributes.

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
  // The ops below take their fake (meta) kernels from Python, from the one module named here
  // (panoptic2/ops/_fake.py, which panoptic2.ops.extension imports right after loading this
  // library). torch checks that register_fake is called from that module, and its error names
  // the module when a fake kernel is needed before it was imported. set_python_module exists
  // in every torch we support (>= 2.9), so no version guard is needed.
  m.set_python_module("panoptic2.ops._fake");

  // Build-time facts, so Python can tell what this binary was compiled with.
  m.def("cuda_version() -> int");
  m.def("compiler_version() -> str");
  m.def("has_cuda_kernels() -> bool");
  m.def("parallel_cpu_kernels() -> bool");

  // Panoptic-DeepLab post-processing (kernels: cpu/ and cuda/panoptic_deeplab_postprocess.*).
  // centers (K, 2) int64 (y, x); offsets (2, H, W) float32 (dy, dx); thing_mask (H, W) bool.
  // Returns (H, W) int64: 1 + index of the nearest center on thing pixels, 0 elsewhere.
  m.def("group_pixels(Tensor centers, Tensor offsets, Tensor thing_mask) -> Tensor");
  // sem_seg (H, W) int64 in [0, C); ins_seg (H, W) int64 in [0, num_instances];
  // thing_mask (H, W) bool; is_thing_class (C,) bool. Returns the (H, W) int64 panoptic map.
  // num_instances is a SymInt: under torch.compile / torch.export it is the data-dependent
  // number of centers (an unbacked size); the kernels receive it as a plain int64_t.
  m.def(
      "merge_semantic_and_instance(Tensor sem_seg, Tensor ins_seg, Tensor thing_mask, "
      "Tensor is_thing_class, SymInt num_instances, int label_divisor, int stuff_area, "
      "int void_label) -> Tensor");
  // Both steps of one image from the network's maps, centers included: sem_seg (H, W) int64
  // in [0, C); center_heatmap (H, W) float32; offsets (2, H, W) float32; thing_mask (H, W)
  // bool or None (then the pixels of thing classes); is_thing_class (C,) bool. Returns the
  // (H, W) int64 panoptic map and the (K, 2) int64 centers (y, x), K data-dependent.
  m.def(
      "panoptic_deeplab_postprocess(Tensor sem_seg, Tensor center_heatmap, Tensor offsets, "
      "Tensor? thing_mask, Tensor is_thing_class, float threshold, int nms_kernel, SymInt? top_k, "
      "int label_divisor, int stuff_area, int void_label) -> (Tensor, Tensor)");
}
