#include "common.h"
#include "pymdbn/ops.h"

namespace pymdbn {

template <class T>
void gibbs_hidden(CMat<T> v, CMat<T> w, CVec<T> b_hidden, T clip, CounterRNG rng, Mat<T> prob,
                  Mat<T> sample) {
  affine_sigmoid<T>(v, w, /*trans_w=*/true, b_hidden, clip, prob);
  sample_bernoulli<T>(prob, rng, sample);
}

template <class T>
void gibbs_visible(CMat<T> h, CMat<T> w, CVec<T> b_visible, Visible visible, T clip,
                   CounterRNG rng, Mat<T> mean, Mat<T> sample) {
  if (visible == Visible::Gaussian) {
    affine<T>(h, w, /*trans_w=*/false, b_visible, mean);
    sample_gaussian<T>(mean, rng, sample);
  } else {
    affine_sigmoid<T>(h, w, /*trans_w=*/false, b_visible, clip, mean);
    sample_bernoulli<T>(mean, rng, sample);
  }
}

template void gibbs_hidden<float>(CMat<float>, CMat<float>, CVec<float>, float, CounterRNG,
                                  Mat<float>, Mat<float>);
template void gibbs_hidden<double>(CMat<double>, CMat<double>, CVec<double>, double, CounterRNG,
                                   Mat<double>, Mat<double>);
template void gibbs_visible<float>(CMat<float>, CMat<float>, CVec<float>, Visible, float,
                                   CounterRNG, Mat<float>, Mat<float>);
template void gibbs_visible<double>(CMat<double>, CMat<double>, CVec<double>, Visible, double,
                                    CounterRNG, Mat<double>, Mat<double>);

}  // namespace pymdbn
