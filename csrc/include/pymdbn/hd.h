// PYMDBN_HD marks the functions that one source serves to the CPU kernels and, compiled
// by nvcc, to device kernels: the CPU tests then check the maths the GPU runs.
#pragma once

#ifdef __CUDACC__
#define PYMDBN_HD __host__ __device__
#else
#define PYMDBN_HD
#endif

// PYMDBN_HD_INLINE: a PYMDBN_HD function inlined wherever it is called. For the
// element-wise maths of numerics.h: out of line, a loop over it cannot vectorise, and
// GCC's inliner (with LTO) left cos_sin_ieee out of line in the portable cos loop while
// inlining it into the sin loop beside it (9-15 ns against 1.4 ns per float32 element).
#ifdef __CUDACC__
#define PYMDBN_HD_INLINE __host__ __device__ __forceinline__
#else
#define PYMDBN_HD_INLINE inline __attribute__((always_inline))
#endif
