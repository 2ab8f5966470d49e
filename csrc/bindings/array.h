// The arrays one build of the bindings takes and makes. The binding sources are compiled
// twice: into _core with NumPy arrays and the pymdbn::cpu kernels, and (PYMDBN_BIND_CUDA,
// the CUDA build) into _cuda with device arrays (anything exposing
// __cuda_array_interface__: CuPy, PyTorch, Numba) and the pymdbn::cuda kernels. Both see
// the same `Array` interface, so every op is bound, checked and documented once.
// Index arrays that the bindings validate on the host (cd_epoch's order, AIS's betas)
// stay NumPy arrays in both builds.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pymdbn/ops.h"

namespace pymdbn::bind {

namespace py = pybind11;

#ifndef PYMDBN_BIND_CUDA

namespace kern = pymdbn::cpu;
using Array = py::array;
constexpr const char* kArrayKind = "NumPy array";

inline bool c_contiguous(const Array& a) { return (a.flags() & py::array::c_style) != 0; }
inline py::object to_object(const Array& a) { return a; }
// The checks above guarantee writeability wherever this is called.
inline void* mutable_ptr(const Array& a) { return const_cast<Array&>(a).mutable_data(); }
inline bool is_array(const py::handle& h) { return py::isinstance<py::array>(h); }

template <class T>
Array new_array(std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape);
}

// The n values of a small array, readable on the host (no copy for host arrays).
template <class T>
struct HostValues {
  const T* data;
  explicit HostValues(const Array& a) : data(static_cast<const T*>(a.data())) {}
  const T& operator[](py::ssize_t i) const { return data[i]; }
};

#else

namespace kern = pymdbn::cuda;
constexpr const char* kArrayKind = "CUDA array (__cuda_array_interface__)";

// A device array described by its __cuda_array_interface__ (version 2 or 3): the object is
// kept alive by this handle; its memory is never copied.
class Array {
 public:
  Array() = default;
  explicit Array(py::object obj);

  py::dtype dtype() const { return dtype_; }
  py::ssize_t ndim() const { return py::ssize_t(shape_.size()); }
  py::ssize_t shape(py::ssize_t d) const { return shape_.at(std::size_t(d)); }
  py::ssize_t size() const;
  bool writeable() const { return !readonly_; }
  bool contiguous() const { return contiguous_; }
  const void* data() const { return ptr_; }
  void* mutable_data() const { return ptr_; }
  const py::object& object() const { return obj_; }

 private:
  py::object obj_;
  py::dtype dtype_;
  std::vector<py::ssize_t> shape_;
  void* ptr_ = nullptr;
  bool readonly_ = false, contiguous_ = true;
};

inline bool c_contiguous(const Array& a) { return a.contiguous(); }
inline bool c_contiguous(const py::array& a) { return (a.flags() & py::array::c_style) != 0; }
inline py::object to_object(const Array& a) { return a.object(); }
inline void* mutable_ptr(const Array& a) { return a.mutable_data(); }
bool is_array(const py::handle& h);

// New device arrays come from the allocator that pymdbn.backend._cuda registers
// (set_allocator), so they belong to the array library the Python side uses.
Array new_array_of(const py::dtype& dtype, std::vector<py::ssize_t> shape);
template <class T>
Array new_array(std::vector<py::ssize_t> shape) {
  return new_array_of(py::dtype::of<T>(), std::move(shape));
}

// Copies a small device array to the host, for the checks that read values.
void copy_to_host(const Array& a, void* dst, std::size_t bytes);
template <class T>
struct HostValues {
  std::vector<T> values;
  explicit HostValues(const Array& a) : values(std::size_t(a.size())) {
    copy_to_host(a, values.data(), values.size() * sizeof(T));
  }
  const T& operator[](py::ssize_t i) const { return values[std::size_t(i)]; }
};

#endif

}  // namespace pymdbn::bind

#ifdef PYMDBN_BIND_CUDA
// Functions taking `Array` accept any object with __cuda_array_interface__; anything else
// (a NumPy array, say) is refused by overload resolution with pybind11's TypeError, which
// names the expected type.
namespace pybind11::detail {
template <>
struct type_caster<pymdbn::bind::Array> {
  PYBIND11_TYPE_CASTER(pymdbn::bind::Array, const_name("CudaArray"));
  bool load(handle src, bool) {
    if (!pymdbn::bind::is_array(src)) return false;
    value = pymdbn::bind::Array(reinterpret_borrow<object>(src));
    return true;
  }
  static handle cast(const pymdbn::bind::Array& a, return_value_policy, handle) {
    return a.object().inc_ref();
  }
};
}  // namespace pybind11::detail
#endif
