#include "common.cuh"
#include "pymdbn/instantiate.h"

namespace pymdbn::cuda {

namespace {

template <class T>
struct ClippedSigmoid {
  T c;
  __device__ T operator()(T z) const { return clipped_sigmoid(z, c); }
};

template <class T>
struct Identity {
  __device__ T operator()(T z) const { return z; }
};

}  // namespace

template <class T>
void affine_sigmoid(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, T clip, Mat<T> out) {
  affine_map<T>(x, w, trans_w, b, out, ClippedSigmoid<T>{clip_bound(clip)});
}

template <class T>
void affine(CMat<T> x, CMat<T> w, bool trans_w, CVec<T> b, Mat<T> out) {
  affine_map<T>(x, w, trans_w, b, out, Identity<T>{});
}

PYMDBN_FOR_EACH_FLOAT(PYMDBN_INSTANTIATE_AFFINE)

}  // namespace pymdbn::cuda
