// The one adapter between Python and the kernels: array conversion and checks (dtype,
// shape, contiguity, writeability), dtype dispatch over PYMDBN_FOR_EACH_FLOAT, new
// outputs, and the call without the GIL. Arrays are never copied or cast here: the
// Python layer hands over C-contiguous arrays of the right dtype, and anything else is
// an error naming the argument (a silent cast of an output would lose the writes).
// `Array` and the kernel namespace `kern` come from array.h: host arrays and pymdbn::cpu in
// _core, device arrays and pymdbn::cuda in _cuda.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "array.h"
#include "pymdbn/ops.h"

namespace pymdbn::bind {

[[noreturn]] inline void fail(const std::string& msg) { throw py::value_error(msg); }

template <class A>
std::string shape_str(const A& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Same type and native byte order (dtype objects are not unique, so compare fields).
template <class T, class A>
bool has_dtype(const A& a) {
  const py::dtype d = a.dtype(), want = py::dtype::of<T>();
  return d.num() == want.num() && d.byteorder() != '>';
}

template <class T, class A>
void check_array(const A& a, const char* name, int ndim, bool writeable) {
  if (!has_dtype<T>(a))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    fail(std::string(name) + ": expected a " + std::to_string(ndim) + "-d array, got shape " +
         shape_str(a));
  if (!c_contiguous(a)) fail(std::string(name) + ": array must be C-contiguous");
  if (writeable && !a.writeable()) fail(std::string(name) + ": array must be writeable");
}

template <class T>
Mat<T> mat(const Array& a, const char* name) {
  check_array<T>(a, name, 2, true);
  return Mat<T>(static_cast<T*>(mutable_ptr(a)), a.shape(0), a.shape(1));
}
template <class T>
CMat<T> cmat(const Array& a, const char* name) {
  check_array<T>(a, name, 2, false);
  return CMat<T>(static_cast<const T*>(a.data()), a.shape(0), a.shape(1));
}
template <class T>
Vec<T> vec(const Array& a, const char* name) {
  check_array<T>(a, name, 1, true);
  return Vec<T>(static_cast<T*>(mutable_ptr(a)), a.shape(0));
}
template <class T, class A = Array>
CVec<T> cvec(const A& a, const char* name) {
  check_array<T>(a, name, 1, false);
  return CVec<T>(static_cast<const T*>(a.data()), a.shape(0));
}

template <class T>
Array empty(py::ssize_t rows, py::ssize_t cols) {
  return new_array<T>({rows, cols});
}
template <class T>
Array empty(py::ssize_t size) {
  return new_array<T>({size});
}

inline void expect(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
}

inline Visible parse_visible(const std::string& s) {
  if (s == "bernoulli") return Visible::Bernoulli;
  if (s == "gaussian") return Visible::Gaussian;
  fail("visible must be 'bernoulli' or 'gaussian', got '" + s + "'");
}

template <class T>
std::string dtype_name() {
  return std::string(py::str(py::dtype::of<T>()));
}

// "a, b or c", for the error messages of the dtype dispatches.
inline std::string or_list(const std::vector<std::string>& names) {
  std::string s = names.at(0);
  for (std::size_t i = 1; i < names.size(); ++i)
    s += (i + 1 == names.size() ? " or " : ", ") + names[i];
  return s;
}

// Calls f(T{}) with T the array's floating dtype (one of PYMDBN_FOR_EACH_FLOAT).
template <class F>
auto dispatch(const Array& a, const char* name, F&& f) {
#define PYMDBN_CASE(T) \
  if (has_dtype<T>(a)) return f(T{});
  PYMDBN_FOR_EACH_FLOAT(PYMDBN_CASE)
#undef PYMDBN_CASE
#define PYMDBN_NAME(T) dtype_name<T>(),
  throw py::type_error(std::string(name) + ": expected " +
                       or_list({PYMDBN_FOR_EACH_FLOAT(PYMDBN_NAME)}) + ", got " +
                       std::string(py::str(a.dtype())));
#undef PYMDBN_NAME
}

// Runs kernel(views...) without the GIL on N new (rows, cols) arrays of T and returns
// them: the array itself for N = 1, else a tuple.
template <class T, std::size_t N = 1, class K>
py::object run(index_t rows, index_t cols, K&& kernel) {
  std::array<Array, N> out;
  std::array<Mat<T>, N> views;
  for (std::size_t i = 0; i < N; ++i) {
    out[i] = empty<T>(rows, cols);
    views[i] = Mat<T>(static_cast<T*>(mutable_ptr(out[i])), rows, cols);
  }
  {
    py::gil_scoped_release nogil;
    std::apply(kernel, views);
  }
  if constexpr (N == 1) {
    return to_object(out[0]);
  } else {
    py::tuple t(N);
    for (std::size_t i = 0; i < N; ++i) t[i] = to_object(out[i]);
    return std::move(t);
  }
}

// Runs f() without the GIL and returns its result.
template <class F>
auto without_gil(F&& f) {
  py::gil_scoped_release nogil;
  return f();
}

// None -> 0 (no clipping); otherwise a positive finite number.
inline double parse_clip(const py::object& c) {
  if (c.is_none()) return 0.0;
  const double v = c.cast<double>();
  expect(v > 0 && v < 1e300, "clip must be None or a positive finite number");
  return v;
}

// A contiguous array of any shape as a flat vector (for element-wise updates).
template <class T>
Vec<T> flat(const Array& a, const char* name) {
  if (!has_dtype<T>(a) || !c_contiguous(a) || !a.writeable())
    fail(std::string(name) + ": expected a writeable C-contiguous array of the parameters' dtype");
  return Vec<T>(static_cast<T*>(mutable_ptr(a)), a.size());
}

void bind_rbm(py::module_& m);
void bind_nn(py::module_& m);
void bind_lrp(py::module_& m);
void bind_prep(py::module_& m);
void bind_conv(py::module_& m);
void bind_config(py::module_& m);
void bind_pool(py::module_& m);  // host_pool.cpp, _core only  // per build: bind_config.cpp (_core), csrc/cuda (_cuda)

}  // namespace pymdbn::bind
