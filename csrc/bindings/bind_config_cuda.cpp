// The _cuda module's own entries: device arrays (array.h's Array for the CUDA build),
// the allocator for new ones, and the device, stream and build queries.
#include <string>

#include "convert.h"
#include "pymdbn/cuda.h"

namespace pymdbn::bind {

namespace {

// The allocator registered by pymdbn.backend._cuda: (shape tuple, dtype) -> device array.
// Leaked on purpose: a py::object destroyed after the interpreter would crash at exit.
py::object* g_allocator = nullptr;

bool c_strides(const std::vector<py::ssize_t>& shape, const py::object& strides,
               py::ssize_t itemsize) {
  if (strides.is_none()) return true;
  const auto s = strides.cast<std::vector<py::ssize_t>>();
  if (s.size() != shape.size()) return false;
  py::ssize_t expected = itemsize;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] > 1 && s[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

}  // namespace

Array::Array(py::object obj) : obj_(std::move(obj)) {
  const py::dict cai = obj_.attr("__cuda_array_interface__").cast<py::dict>();
  dtype_ = py::dtype(cai["typestr"].cast<std::string>());
  shape_ = cai["shape"].cast<std::vector<py::ssize_t>>();
  const auto data = cai["data"].cast<py::tuple>();
  ptr_ = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  readonly_ = data[1].cast<bool>();
  contiguous_ = c_strides(shape_, cai.contains("strides") ? py::object(cai["strides"]) : py::none(),
                          dtype_.itemsize());
}

py::ssize_t Array::size() const {
  py::ssize_t n = 1;
  for (auto s : shape_) n *= s;
  return n;
}

bool is_array(const py::handle& h) { return py::hasattr(h, "__cuda_array_interface__"); }

Array new_array_of(const py::dtype& dtype, std::vector<py::ssize_t> shape) {
  if (!g_allocator)
    throw std::runtime_error("pymdbn._cuda: no allocator registered (import pymdbn.backend._cuda)");
  py::tuple s(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) s[i] = shape[i];
  return Array((*g_allocator)(s, dtype));
}

void copy_to_host(const Array& a, void* dst, std::size_t bytes) {
  cuda::copy_to_host(a.data(), dst, bytes);
}

void bind_config(py::module_& m) {
  m.def("build_info", [] {
    py::dict d;
    d["version"] = PYMDBN_VERSION;
#if defined(__GNUC__)
    d["compiler"] = std::string("gcc ") + __VERSION__;
#endif
    d["cuda"] = true;
    d["cuda_runtime"] = cuda::runtime_version();
    d["cuda_driver"] = cuda::driver_version();
    d["cublas"] = cuda::cublas_version();
    d["cuda_architectures"] = PYMDBN_CUDA_ARCHITECTURES;
    d["blas"] = "cuBLAS";
    return d;
  });
  m.def("set_matmul_precision", [](const std::string& p) {
    expect(p == "float32" || p == "bfloat16",
           "matmul precision must be 'float32' or 'bfloat16', got '" + p + "'");
    cuda::set_bfloat16_products(p == "bfloat16");
  }, py::arg("precision"), "The operand precision of float32 products, for this thread.");
  m.def("get_matmul_precision", [] {
    return cuda::bfloat16_products() ? "bfloat16" : "float32";
  });
  m.def("device_count", &cuda::device_count);
  m.def("unavailable_reason", &cuda::unavailable_reason);
  m.def("device_name", &cuda::device_name);
  m.def("set_stream", &cuda::set_stream, py::arg("stream"),
        "The stream the ops run on, as an integer (0: the legacy default stream).");
  m.def("get_stream", &cuda::get_stream);
  m.def("synchronize", [] { without_gil([] { cuda::synchronize(); }); });
  m.def("set_allocator", [](py::object alloc) {
    if (!g_allocator) g_allocator = new py::object();
    *g_allocator = std::move(alloc);
  });
  // The CPU module's thread controls, for the backend interface: the GPU has no OpenMP pool.
  m.def("get_num_threads", [] { return py::make_tuple(1, 1); });
  m.def("set_num_threads", [](int n) { expect(n >= 1, "n_threads must be >= 1"); });
}

}  // namespace pymdbn::bind
