// Bernoulli and Gaussian sampling and the raw Philox words: one thread per 4-column
// Philox block of a row (common.cuh's launch_per_block), as on the CPU.
#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

template <class T>
struct Bernoulli {
  CMat<T> p;
  Mat<T> out;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
#pragma unroll
    for (int t = 0; t < 4; ++t)
      if (t < n) out(i, j0 + t) = u01(r.v[t]) < double(p(i, j0 + t)) ? T(1) : T(0);
  }
};

template <class T>
struct Gaussian {
  CMat<T> mean;
  Mat<T> out;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
    T z[4];
    box_muller(r.v[0], r.v[1], z[0], z[1]);
    if (n > 2) box_muller(r.v[2], r.v[3], z[2], z[3]);
#pragma unroll
    for (int t = 0; t < 4; ++t)
      if (t < n) out(i, j0 + t) = mean(i, j0 + t) + z[t];
  }
};

struct Words {
  Mat<std::uint32_t> out;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
#pragma unroll
    for (int t = 0; t < 4; ++t)
      if (t < n) out(i, j0 + t) = r.v[t];
  }
};

}  // namespace

template <class T>
void sample_bernoulli(CMat<T> p, CounterRNG rng, Mat<T> out) {
  launch_per_block(p.rows, p.cols, rng, Bernoulli<T>{p, out});
}

template <class T>
void sample_gaussian(CMat<T> mean, CounterRNG rng, Mat<T> out) {
  launch_per_block(mean.rows, mean.cols, rng, Gaussian<T>{mean, out});
}

void random_bits(CounterRNG rng, Mat<std::uint32_t> out) {
  launch_per_block(out.rows, out.cols, rng, Words{out});
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_SAMPLERS)

}  // namespace pymdbn::cuda
