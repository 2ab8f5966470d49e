#include "common.h"
#include "pymdbn/ops.h"

namespace pymdbn {

template <class T>
void affine_sigmoid(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, T clip, Mat<T> out) {
  const T c = clip_bound(clip);
  cpu::affine_map<T>(x, w, trans_w, b, out, [c](T z) { return clipped_sigmoid(z, c); });
}

template <class T>
void affine(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out) {
  cpu::affine_map<T>(x, w, trans_w, b, out, [](T z) { return z; });
}

template void affine_sigmoid<float>(CMat<float>, CMat<float>, bool, CVec<float>, float, Mat<float>);
template void affine_sigmoid<double>(CMat<double>, CMat<double>, bool, CVec<double>, double,
                                     Mat<double>);
template void affine<float>(CMat<float>, CMat<float>, bool, CVec<float>, Mat<float>);
template void affine<double>(CMat<double>, CMat<double>, bool, CVec<double>, Mat<double>);

}  // namespace pymdbn
