// Gibbs half-steps: one GEMM, then one kernel that adds the bias, applies the unit's
// mean function and samples, one thread per 4-column Philox block of a row
// (common.cuh's launch_per_block).
#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

// mean(i, j) = map(mean(i, j) + b[j]) over the GEMM's output, sample(i, j) drawn from the
// stored (rounded) value exactly as sample_bernoulli / sample_gaussian draw it from a
// given mean. Each element is read and written by one thread, prob before sample, so the
// result is the CPU's even if the two views alias.
template <class T, bool kGaussian>
struct BiasSample {
  Mat<T> mean;
  CVec<T> b;
  T clip;  // clip_bound's
  Mat<T> sample;
  __device__ void operator()(index_t i, index_t j0, int n, const Philox4x32& r) const {
    T z[4];
    if constexpr (kGaussian) {
      box_muller(r.v[0], r.v[1], z[0], z[1]);
      if (n > 2) box_muller(r.v[2], r.v[3], z[2], z[3]);
    }
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      if (t >= n) break;
      const index_t j = j0 + t;
      const T a = mean(i, j) + b[j];
      if constexpr (kGaussian) {
        mean(i, j) = a;
        sample(i, j) = a + z[t];
      } else {
        const T p = clipped_sigmoid(a, clip);
        mean(i, j) = p;
        sample(i, j) = u01(r.v[t]) < double(p) ? T(1) : T(0);
      }
    }
  }
};

template <class T, bool kGaussian>
void bias_sample(Mat<T> mean, CVec<T> b, T clip, CounterRNG rng, Mat<T> sample) {
  launch_per_block(mean.rows, mean.cols, rng,
                   BiasSample<T, kGaussian>{mean, b, clip_bound(clip), sample});
}

}  // namespace

template <class T>
void gibbs_hidden(CMat<T> v, CMat<T> w, CVec<T> b_hidden, T clip, CounterRNG rng, Mat<T> prob,
                  Mat<T> sample) {
  gemm<T>(false, true, T(1), v, w, T(0), prob);
  bias_sample<T, false>(prob, b_hidden, clip, rng, sample);
}

template <class T>
void gibbs_visible(CMat<T> h, CMat<T> w, CVec<T> b_visible, Visible visible, T clip,
                   CounterRNG rng, Mat<T> mean, Mat<T> sample) {
  gemm<T>(false, false, T(1), h, w, T(0), mean);
  if (visible == Visible::Gaussian)
    bias_sample<T, true>(mean, b_visible, clip, rng, sample);
  else
    bias_sample<T, false>(mean, b_visible, clip, rng, sample);
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_GIBBS)

}  // namespace pymdbn::cuda
