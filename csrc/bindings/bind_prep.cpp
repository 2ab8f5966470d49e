// Binding of the preprocessing op.
#include <cstdint>

#include "convert.h"

namespace pymdbn::bind {

namespace {

using py::arg;

template <class T>
py::tuple standardize_typed(const Array& x, const Array& mean, const Array& scale,
                            bool per_row) {
  if (x.ndim() != 2 || !c_contiguous(x))
    fail("x: expected a C-contiguous 2-d array, got shape " + shape_str(x));
  auto mv = cvec<T>(mean, "mean");
  auto sv = cvec<T>(scale, "scale");
  const index_t rows = x.shape(0), cols = x.shape(1);
  expect(mv.size == sv.size, "mean and scale must have the same length");
  expect(mv.size == 1 || mv.size == cols,
         "mean and scale must have 1 or n_features (" + std::to_string(cols) + ") entries, got " +
             std::to_string(mv.size));
  auto out = empty<T>(rows, cols);
  auto ov = mat<T>(out, "out");
  const bool per_feature = mv.size != 1 || cols == 1;
  auto read = [&](auto stag) {
    using S = decltype(stag);
    const S* xp = static_cast<const S*>(x.data());
    const bool finite = without_gil([&] {
      return kern::standardize<S, T>(xp, rows, cols, mv.data, sv.data, per_feature, per_row, ov);
    });
    return py::make_tuple(out, finite);
  };
#define PYMDBN_READ(S, T) \
  if (has_dtype<S>(x)) return read(S{});
  PYMDBN_FOR_EACH_SOURCE(PYMDBN_READ, T)
#undef PYMDBN_READ
#define PYMDBN_NAME(S, T) dtype_name<S>(),
  throw py::type_error("x: expected " + or_list({PYMDBN_FOR_EACH_SOURCE(PYMDBN_NAME, T)}) +
                       ", got " + std::string(py::str(x.dtype())));
#undef PYMDBN_NAME
}

py::tuple standardize_py(Array x, Array mean, Array scale, bool per_row) {
  return dispatch(mean, "mean", [&](auto tag) -> py::tuple {
    return standardize_typed<decltype(tag)>(x, mean, scale, per_row);
  });
}

}  // namespace

void bind_prep(py::module_& m) {
  m.def("standardize", &standardize_py, arg("x"), arg("mean"), arg("scale"),
        arg("per_row") = false,
        "(x - mean) / scale in mean's dtype, each row first standardised by its own mean "
        "and deviation with per_row; returns (out, all_finite).");
}

}  // namespace pymdbn::bind
