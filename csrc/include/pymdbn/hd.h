// PYMDBN_HD marks the functions that one source serves to the CPU kernels and, compiled
// by nvcc, to device kernels: the CPU tests then check the maths the GPU runs.
#pragma once

#ifdef __CUDACC__
#define PYMDBN_HD __host__ __device__
#else
#define PYMDBN_HD
#endif
