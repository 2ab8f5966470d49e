// Element-wise exp, cos, sin, arctan2 and power through numerics.h's functions: plain
// IEEE operations in a fixed order, so the same bits on every CPU. For the phantoms
// (pymdbn/data/_portable.py, whose NumPy code is the twin: the same operations in the
// same order, checked bit for bit by tests/test_phantoms_portable.py), where NumPy's own
// functions round differently with AVX-512, AVX2 and its baseline loops.
#include "portable_math.h"

#include "common.h"

namespace pymdbn::cpu {

namespace {

template <class T>
PYMDBN_ALWAYS_INLINE void portable_range(PortableFn fn, const T* x, const T* y, double p, T* out,
                                         index_t i0, index_t i1) {
  switch (fn) {
    case PortableFn::Exp:
      for (index_t i = i0; i < i1; ++i) out[i] = T(exp_ieee(double(x[i])));
      break;
    case PortableFn::Cos:
      for (index_t i = i0; i < i1; ++i) out[i] = T(cos_sin_ieee(double(x[i])).cos);
      break;
    case PortableFn::Sin:
      for (index_t i = i0; i < i1; ++i) out[i] = T(cos_sin_ieee(double(x[i])).sin);
      break;
    case PortableFn::Atan2:  // atan2(y, x)
      for (index_t i = i0; i < i1; ++i) out[i] = T(atan2_ieee(double(y[i]), double(x[i])));
      break;
    case PortableFn::Power:  // x^p = exp(p log x)
      for (index_t i = i0; i < i1; ++i) out[i] = T(exp_ieee(p * log_ieee(double(x[i]))));
      break;
  }
}
#ifdef PYMDBN_SIMD_VARIANTS
template <class T>
PYMDBN_TARGET_AVX2 void portable_range_avx2(PortableFn fn, const T* x, const T* y, double p,
                                            T* out, index_t i0, index_t i1) {
  portable_range(fn, x, y, p, out, i0, i1);
}
template <class T>
PYMDBN_TARGET_AVX512 void portable_range_avx512(PortableFn fn, const T* x, const T* y, double p,
                                                T* out, index_t i0, index_t i1) {
  portable_range(fn, x, y, p, out, i0, i1);
}
#endif

}  // namespace

template <class T>
void portable_math(PortableFn fn, const T* x, const T* y, double p, T* out, index_t n) {
  // Denormals stay, as in NumPy (parallel_elements sets no FTZ/DAZ).
  parallel_elements(n, [&](Simd simd, index_t i0, index_t i1) {
#ifdef PYMDBN_SIMD_VARIANTS
    if (simd == Simd::avx512) return portable_range_avx512<T>(fn, x, y, p, out, i0, i1);
    if (simd == Simd::avx2) return portable_range_avx2<T>(fn, x, y, p, out, i0, i1);
#endif
    (void)simd;
    portable_range<T>(fn, x, y, p, out, i0, i1);
  });
}

template void portable_math<float>(PortableFn, const float*, const float*, double, float*, index_t);
template void portable_math<double>(PortableFn, const double*, const double*, double, double*,
                                    index_t);

}  // namespace pymdbn::cpu
