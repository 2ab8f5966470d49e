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

}  // namespace pymdbn::cpu

namespace pymdbn::cuda {

#include "pymdbn/ops.inc"

}  // namespace pymdbn::cuda
