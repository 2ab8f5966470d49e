// Array conversion and argument checks for the bindings. Arrays are never copied or
// cast here: the Python layer hands over C-contiguous arrays of the right dtype, and
// anything else is an error (a silent cast of an output would lose the writes).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "pymdbn/ops.h"

namespace pymdbn::bind {

namespace py = pybind11;

[[noreturn]] inline void fail(const std::string& msg) { throw py::value_error(msg); }

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Same type and native byte order (dtype objects are not unique, so compare fields).
template <class T>
bool has_dtype(const py::array& a) {
  const py::dtype d = a.dtype(), want = py::dtype::of<T>();
  return d.num() == want.num() && d.byteorder() != '>';
}

template <class T>
void check_array(const py::array& a, const char* name, int ndim, bool writeable) {
  if (!has_dtype<T>(a))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    fail(std::string(name) + ": expected a " + std::to_string(ndim) + "-d array, got shape " +
         shape_str(a));
  if (!(a.flags() & py::array::c_style))
    fail(std::string(name) + ": array must be C-contiguous");
  if (writeable && !a.writeable()) fail(std::string(name) + ": array must be writeable");
}

template <class T>
Mat<T> mat(py::array& a, const char* name) {
  check_array<T>(a, name, 2, true);
  return Mat<T>(static_cast<T*>(a.mutable_data()), a.shape(0), a.shape(1));
}
template <class T>
CMat<T> cmat(const py::array& a, const char* name) {
  check_array<T>(a, name, 2, false);
  return CMat<T>(static_cast<const T*>(a.data()), a.shape(0), a.shape(1));
}
template <class T>
Vec<T> vec(py::array& a, const char* name) {
  check_array<T>(a, name, 1, true);
  return Vec<T>(static_cast<T*>(a.mutable_data()), a.shape(0));
}
template <class T>
CVec<T> cvec(const py::array& a, const char* name) {
  check_array<T>(a, name, 1, false);
  return CVec<T>(static_cast<const T*>(a.data()), a.shape(0));
}

template <class T>
py::array_t<T> empty(py::ssize_t rows, py::ssize_t cols) {
  return py::array_t<T>({rows, cols});
}

inline void expect(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
}

inline Visible parse_visible(const std::string& s) {
  if (s == "bernoulli") return Visible::Bernoulli;
  if (s == "gaussian") return Visible::Gaussian;
  fail("visible must be 'bernoulli' or 'gaussian', got '" + s + "'");
}

// Calls f(T{}) with T the array's floating dtype.
template <class F>
auto dispatch(const py::array& a, const char* name, F&& f) {
  if (has_dtype<float>(a)) return f(float{});
  if (has_dtype<double>(a)) return f(double{});
  throw py::type_error(std::string(name) + ": expected float32 or float64, got " +
                       std::string(py::str(a.dtype())));
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
Vec<T> flat(py::array& a, const char* name) {
  if (!has_dtype<T>(a) || !(a.flags() & py::array::c_style) || !a.writeable())
    fail(std::string(name) + ": expected a writeable C-contiguous array of the parameters' dtype");
  return Vec<T>(static_cast<T*>(a.mutable_data()), a.size());
}

void bind_rbm(py::module_& m);
void bind_nn(py::module_& m);
void bind_lrp(py::module_& m);
void bind_prep(py::module_& m);
void bind_config(py::module_& m);

}  // namespace pymdbn::bind
