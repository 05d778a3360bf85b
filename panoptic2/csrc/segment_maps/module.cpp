// The CPython module panoptic2._segment_maps: the kernels of kernels.h on buffer-protocol
// objects (NumPy arrays, bytes). It links neither torch nor NumPy; the argument checks that
// need dtypes are in its Python wrapper, panoptic2/ops/segments.py, which this module trusts
// for element types and checks only for sizes and alignment. The GIL is released while a
// kernel runs.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <vector>

#include "kernels.h"

namespace {

using panoptic2::segment_maps::IdType;

// Releases a Py_buffer when it leaves scope, on every return path.
struct BufferGuard {
  Py_buffer* view;
  ~BufferGuard() { PyBuffer_Release(view); }
};

PyObject* png_unfilter_to_ids(PyObject*, PyObject* args) {
  Py_buffer raw, out;
  long long height, width;
  int channels;
  if (!PyArg_ParseTuple(args, "y*LLiw*", &raw, &height, &width, &channels, &out)) {
    return nullptr;
  }
  BufferGuard raw_guard{&raw}, out_guard{&out};
  if (channels != 3 && channels != 4) {
    PyErr_Format(PyExc_ValueError, "channels must be 3 (RGB) or 4 (RGBA), got %d", channels);
    return nullptr;
  }
  if (height < 0 || width < 0) {
    PyErr_Format(PyExc_ValueError, "negative size %lldx%lld", width, height);
    return nullptr;
  }
  const long long needed = height * (1 + width * channels);
  if (raw.len != needed) {
    PyErr_Format(PyExc_ValueError,
                 "the inflated image has %zd bytes, but a %lldx%lld image with %d channels "
                 "needs %lld",
                 raw.len, width, height, channels, needed);
    return nullptr;
  }
  if (out.len != height * width * 4 || reinterpret_cast<uintptr_t>(out.buf) % 4 != 0) {
    PyErr_Format(PyExc_ValueError, "the output must be %lld aligned bytes (uint32 ids), got %zd",
                 height * width * 4, out.len);
    return nullptr;
  }
  int bad_filter = 0;
  int64_t bad_row;
  Py_BEGIN_ALLOW_THREADS;
  bad_row = panoptic2::segment_maps::png_unfilter_to_ids(
      static_cast<const uint8_t*>(raw.buf), height, width, channels,
      static_cast<uint32_t*>(out.buf), &bad_filter);
  Py_END_ALLOW_THREADS;
  if (bad_row >= 0) {
    PyErr_Format(PyExc_ValueError, "invalid filter type %d on row %lld", bad_filter,
                 static_cast<long long>(bad_row));
    return nullptr;
  }
  Py_RETURN_NONE;
}

Py_ssize_t item_size(int type) { return type == static_cast<int>(IdType::kInt64) ? 8 : 4; }

PyObject* int64_bytes(const std::vector<int64_t>& values) {
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(values.data()),
                                   static_cast<Py_ssize_t>(values.size() * sizeof(int64_t)));
}

PyObject* count_segment_pairs(PyObject*, PyObject* args) {
  Py_buffer gt, pred;
  int gt_type, pred_type;
  long long n;
  if (!PyArg_ParseTuple(args, "y*iy*iL", &gt, &gt_type, &pred, &pred_type, &n)) {
    return nullptr;
  }
  BufferGuard gt_guard{&gt}, pred_guard{&pred};
  for (int type : {gt_type, pred_type}) {
    if (type < 0 || type > 2) {
      PyErr_Format(PyExc_ValueError, "unknown id type code %d (0 int32, 1 uint32, 2 int64)",
                   type);
      return nullptr;
    }
  }
  if (n < 0 || gt.len != n * item_size(gt_type) || pred.len != n * item_size(pred_type)) {
    PyErr_Format(PyExc_ValueError,
                 "the id maps must hold %lld ids each, got %zd and %zd bytes", n, gt.len,
                 pred.len);
    return nullptr;
  }
  panoptic2::segment_maps::PairCounts pairs;
  Py_BEGIN_ALLOW_THREADS;
  pairs = panoptic2::segment_maps::count_segment_pairs(
      gt.buf, static_cast<IdType>(gt_type), pred.buf, static_cast<IdType>(pred_type), n);
  Py_END_ALLOW_THREADS;
  PyObject* result = PyTuple_New(3);
  if (result == nullptr) {
    return nullptr;
  }
  int index = 0;
  for (const std::vector<int64_t>* values : {&pairs.gt, &pairs.pred, &pairs.counts}) {
    PyObject* item = int64_bytes(*values);
    if (item == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    PyTuple_SET_ITEM(result, index++, item);  // steals the reference
  }
  return result;
}

PyMethodDef methods[] = {
    {"png_unfilter_to_ids", png_unfilter_to_ids, METH_VARARGS,
     "png_unfilter_to_ids(raw, height, width, channels, out): undoes the row filters of an "
     "inflated 8-bit RGB(A) PNG and writes uint32 ids R + 256 G + 256^2 B into out."},
    {"count_segment_pairs", count_segment_pairs, METH_VARARGS,
     "count_segment_pairs(gt, gt_type, pred, pred_type, n) -> (gt_values, pred_values, "
     "counts) as int64 bytes: every distinct pixel pair once, in raster order."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_segment_maps",
    "panoptic2 segment-map kernels (no torch); use them through panoptic2.ops.segments",
    -1,
    methods,
};

}  // namespace

PyMODINIT_FUNC PyInit__segment_maps(void) { return PyModule_Create(&module); }
