// Element-wise functions with the same bits on every CPU (portable_math.cpp); host only.
#pragma once
#include "pymdbn/view.h"

namespace pymdbn::cpu {

enum class PortableFn { Exp, Cos, Sin, Atan2, Power };

// out[i] = fn(x[i]) for i < n; Atan2 takes y (atan2(y[i], x[i])), Power the exponent p.
template <class T>
void portable_math(PortableFn fn, const T* x, const T* y, double p, T* out, index_t n);

}  // namespace pymdbn::cpu
