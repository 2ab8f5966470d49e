// The ops of every backend. Each backend declares the ops of ops.inc in its own
// namespace and implements them in its own folder: pymdbn::cpu in csrc/cpu/<op>.cpp,
// pymdbn::cuda in csrc/cuda/<op>.cu (built with -DPYMDBN_CUDA=ON; views then point to
// device memory, except the host arrays ops.inc names). Shared types stay in pymdbn
// (types.h, view.h, rng.h).
#pragma once
#include <cstdint>

#include "pymdbn/rng.h"
#include "pymdbn/types.h"
#include "pymdbn/view.h"

namespace pymdbn::cpu {

#include "pymdbn/ops.inc"

// The CPU backend's BLAS (for show_config); OpenBLAS's own threads are off, gemm splits
// the work across OpenMP threads instead.
void blas_single_threaded();
int blas_num_threads();
const char* blas_config();

// y = x op(a) for one row x of op(a).rows entries (op(a) = a^T when trans), as one
// single-threaded BLAS GEMV. The dense and LRP kernels use it for a batch of one sample,
// once per block of row_blocks: a GEMM of one row packs the whole of `a` before using it,
// a GEMV streams it once (1 x 4096 x 512 in float32 on the 2-core Xeon: 1.0 ms as a GEMM,
// 0.4 ms as a GEMV, one thread).
template <class T>
void row_product(bool trans, CMat<T> a, const T* x, T* y);

// Blocks of the n_out entries of a one-row product over `size` matrix elements: `count`
// blocks of `width` entries (a multiple of 16; the last may be shorter). A function of the
// shape only, never of the thread count, so the product is too.
struct RowBlocks {
  index_t count = 1, width = 0;
  index_t begin(index_t i) const { return i * width; }
};
RowBlocks row_blocks(index_t n_out, index_t size);

}  // namespace pymdbn::cpu

namespace pymdbn::cuda {

#include "pymdbn/ops.inc"

}  // namespace pymdbn::cuda
