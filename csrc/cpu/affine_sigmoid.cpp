#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

template <class T>
void affine_sigmoid(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, T clip, Mat<T> out) {
  const T c = clip_bound(clip);
  affine_map<T>(x, w, trans_w, b, out, [c](T z) { return clipped_sigmoid(z, c); });
}

template <class T>
void affine(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out) {
  affine_map<T>(x, w, trans_w, b, out, [](T z) { return z; });
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_AFFINE)

}  // namespace pymdbn::cpu
