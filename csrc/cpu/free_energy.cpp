#include <vector>

#include "common.h"
#include "pymdbn/instantiate.h"
#include "pymdbn/ops.h"

namespace pymdbn::cpu {

template <class T>
void free_energy(CMat<T> v, CMat<T> w, CVec<T> b_visible, CVec<T> b_hidden, Visible visible,
                 Vec<T> out) {
  std::vector<T> buf(v.rows * w.rows);
  Mat<T> pre(buf.data(), v.rows, w.rows);
  affine<T>(v, w, true, b_hidden, pre);
  for_rows(v.rows, w.rows, [&](index_t i) {
    const T* p = pre.row(i);
    const T* vi = v.row(i);
    double hidden = 0, vis = 0;
    for (index_t j = 0; j < pre.cols; ++j) hidden += double(softplus(p[j]));
    if (visible == Visible::Gaussian) {
      for (index_t j = 0; j < v.cols; ++j) {
        const double d = double(vi[j]) - double(b_visible[j]);
        vis += 0.5 * d * d;
      }
    } else {
      for (index_t j = 0; j < v.cols; ++j) vis -= double(vi[j]) * double(b_visible[j]);
    }
    out[i] = T(vis - hidden);
  });
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_FREE_ENERGY)

}  // namespace pymdbn::cpu
