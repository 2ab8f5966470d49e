// Free energy per row: one GEMM for the hidden pre-activations, then one thread per row
// summing in double in the CPU's column order.
#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// Small blocks: each thread runs a long serial loop, so rows are spread over more SMs.
constexpr int kRowThreads = 64;

template <class T>
__global__ void free_energy_kernel(CMat<T> pre, CMat<T> v, CVec<T> b_visible, bool gaussian,
                                   Vec<T> out) {
  PYMDBN_GRID_STRIDE(i, v.rows) {
    double hidden = 0, vis = 0;
    for (index_t j = 0; j < pre.cols; ++j) hidden += double(softplus(pre(i, j)));
    if (gaussian) {
      for (index_t j = 0; j < v.cols; ++j) {
        const double d = double(v(i, j)) - double(b_visible[j]);
        vis += 0.5 * d * d;
      }
    } else {
      for (index_t j = 0; j < v.cols; ++j) vis -= double(v(i, j)) * double(b_visible[j]);
    }
    out[i] = T(vis - hidden);
  }
}

}  // namespace

template <class T>
void free_energy(CMat<T> v, CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, Visible visible,
                 Vec<T> out) {
  if (v.rows == 0) return;
  Buffer<T> buf(v.rows * w.rows);
  Mat<T> pre(buf.get(), v.rows, w.rows);
  affine<T>(v, w, true, b_hidden, pre);
  launch_with(kRowThreads, v.rows, free_energy_kernel<T>, CMat<T>(pre), v, b_visible,
              visible == Visible::Gaussian, out);
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_FREE_ENERGY)

}  // namespace pymdbn::cuda
