#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

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

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_GIBBS)

}  // namespace pymdbn::cpu
