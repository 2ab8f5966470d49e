// Each op's explicit instantiation, written once (its signature's one place besides ops.inc),
// since a backend instantiates every op it implements for every PYMDBN_FOR_EACH_FLOAT type.
#pragma once
#include <cstdint>

#include "pymdbn/ops.h"

#define PYMDBN_INSTANTIATE_AFFINE(T)                                           \
  template void affine_sigmoid<T>(CMat<T>, CMat<T>, bool, CVec<T>, T, Mat<T>); \
  template void affine<T>(CMat<T>, CMat<T>, bool, CVec<T>, Mat<T>);

#define PYMDBN_INSTANTIATE_SAMPLERS(T)                            \
  template void sample_bernoulli<T>(CMat<T>, CounterRNG, Mat<T>); \
  template void sample_gaussian<T>(CMat<T>, CounterRNG, Mat<T>);

#define PYMDBN_INSTANTIATE_GIBBS(T)                                                         \
  template void gibbs_hidden<T>(CMat<T>, CMat<T>, CVec<T>, T, CounterRNG, Mat<T>, Mat<T>);  \
  template void gibbs_visible<T>(CMat<T>, CMat<T>, CVec<T>, Visible, T, CounterRNG, Mat<T>, \
                                 Mat<T>);

#define PYMDBN_INSTANTIATE_CD(T)                                                                 \
  template double cd_gradient<T>(CMat<T>, CMat<T>, CVec<T>, CVec<T>, Mat<T>, const CDConfig<T>&, \
                                 std::uint64_t, std::uint64_t, Mat<T>, Mat<T>);                  \
  template void cd_apply<T>(CMat<T>, CMat<T>, RBMState<T>, const CDConfig<T>&);                  \
  template EpochStats cd_epoch<T>(CMat<T>, const std::int64_t*, std::int64_t, std::int64_t,      \
                                  RBMState<T>, const CDConfig<T>&, std::uint64_t);

#define PYMDBN_INSTANTIATE_FREE_ENERGY(T) \
  template void free_energy<T>(CMat<T>, CMat<T>, CVec<T>, CVec<T>, Visible, Vec<T>);

#define PYMDBN_INSTANTIATE_AIS(T)                                                    \
  template void ais_log_weights<T>(CMat<T>, CVec<T>, CVec<T>, CVec<T>, CVec<double>, \
                                   std::uint64_t, Vec<double>);

#define PYMDBN_INSTANTIATE_DENSE(T)                                                           \
  template void dense_forward<T>(CMat<T>, CMat<T>, CVec<T>, T, Activation, Mat<T>, Mat<T>);   \
  template void dense_backward<T>(CMat<T>, CMat<T>, CMat<T>, CMat<T>, CMat<T>, T, Activation, \
                                  Mat<T>, Mat<T>, Vec<T>, Mat<T>);                            \
  template double softmax_cross_entropy<T>(CMat<T>, const std::int64_t*, const double*,       \
                                           Mat<T>, Mat<T>);                                   \
  template void sgd_momentum_update<T>(Vec<T>, CVec<T>, Vec<T>, T, T, T);                     \
  template void adam_update<T>(Vec<T>, CVec<T>, Vec<T>, Vec<T>, T, T, T, T, std::int64_t, T);

// standardize<S, T> for every PYMDBN_FOR_EACH_SOURCE type S.
#define PYMDBN_INSTANTIATE_STANDARDIZE_FROM(S, T)                                             \
  template bool standardize<S, T>(const S*, index_t, index_t, const T*, const T*, bool, bool, \
                                  Mat<T>);
#define PYMDBN_INSTANTIATE_STANDARDIZE(T) \
  PYMDBN_FOR_EACH_SOURCE(PYMDBN_INSTANTIATE_STANDARDIZE_FROM, T)

#define PYMDBN_INSTANTIATE_LRP(T)                                                              \
  template void lrp_dense<T>(CMat<T>, CMat<T>, CVec<T>, CMat<T>, CMat<T>, const LrpParams<T>&, \
                             Mat<T>, double*);

#define PYMDBN_INSTANTIATE_CONV(T)                                                            \
  template void im2col<T>(CMat<T>, index_t, index_t, index_t, index_t, index_t, Mat<T>);      \
  template void col2im<T>(CMat<T>, index_t, index_t, index_t, index_t, index_t, Mat<T>);      \
  template void pool_forward<T>(CMat<T>, index_t, index_t, index_t, index_t, Pooling, Mat<T>); \
  template void pool_backward<T>(CMat<T>, CMat<T>, index_t, index_t, index_t, index_t, Pooling, \
                                 Mat<T>);
