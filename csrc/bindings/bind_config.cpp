#include <omp.h>

#include "../cpu/blas.h"
#include "../cpu/onednn.h"
#include "../cpu/portable_math.h"
#include "convert.h"

namespace pymdbn::bind {

namespace {

// portable_math(fn, x, y, p, out): checked here, computed without the GIL.
template <class T>
void portable_typed(cpu::PortableFn fn, const py::array& x, const py::object& y, double p,
                    py::array& out) {
  const auto n = index_t(x.size());
  const T* yp = nullptr;
  if (fn == cpu::PortableFn::Atan2) {
    const auto ya = py::cast<py::array>(y);
    expect(ya.dtype().is(x.dtype()) && index_t(ya.size()) == n &&
               (ya.flags() & py::array::c_style),
           "portable_math: y must be a C-contiguous array of x's dtype and size");
    yp = static_cast<const T*>(ya.data());
  }
  const T* xp = static_cast<const T*>(x.data());
  T* op = static_cast<T*>(out.mutable_data());
  py::gil_scoped_release release;
  cpu::portable_math<T>(fn, xp, yp, p, op, n);
}

void portable_py(const std::string& name, const py::array& x, const py::object& y, double p,
                 py::array out) {
  static const std::pair<const char*, cpu::PortableFn> names[] = {
      {"exp", cpu::PortableFn::Exp},     {"cos", cpu::PortableFn::Cos},
      {"sin", cpu::PortableFn::Sin},     {"arctan2", cpu::PortableFn::Atan2},
      {"power", cpu::PortableFn::Power}};
  const auto* it = std::find_if(std::begin(names), std::end(names),
                                [&](const auto& e) { return name == e.first; });
  expect(it != std::end(names), "portable_math: unknown function '" + name + "'");
  expect((x.flags() & py::array::c_style) && (out.flags() & py::array::c_style) &&
             out.writeable() && out.dtype().is(x.dtype()) && out.size() == x.size(),
         "portable_math: x and out must be C-contiguous arrays of one dtype and size, out "
         "writeable");
  if (x.dtype().is(py::dtype::of<float>()))
    return portable_typed<float>(it->second, x, y, p, out);
  expect(x.dtype().is(py::dtype::of<double>()),
         "portable_math: expected float32 or float64, got " + std::string(py::str(x.dtype())));
  portable_typed<double>(it->second, x, y, p, out);
}

}  // namespace

void bind_config(py::module_& m) {
  bind_pool(m);
  m.def("portable_math", &portable_py, py::arg("name"), py::arg("x"), py::arg("y"),
        py::arg("p"), py::arg("out"),
        "out = name(x) (exp, cos, sin; arctan2(y, x); power(x, p)) with the same bits on "
        "every CPU: pymdbn/data/_portable.py's functions, compiled.");
  m.def("build_info", [] {
    py::dict d;
    d["version"] = PYMDBN_VERSION;
#if defined(__clang__)
    d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = std::string("gcc ") + __VERSION__;
#else
    d["compiler"] = "unknown";
#endif
    d["openmp"] = int(_OPENMP);
    d["blas"] = std::string("scipy-openblas32 ") + PYMDBN_OPENBLAS_VERSION;
    d["blas_config"] = std::string(cpu::blas_config());
    d["cuda"] = false;
    d["onednn_compiled"] = cpu::onednn::compiled();
    return d;
  });
  m.def("load_onednn", [](const std::string& path) { return cpu::onednn::load(path); },
        py::arg("path"),
        "Loads oneDNN for bfloat16 products; returns '' or why bfloat16 is unavailable.");
  m.def("onednn_info", [] { return cpu::onednn::describe(); });
  m.def("set_matmul_precision", [](const std::string& p) {
    expect(p == "float32" || p == "bfloat16",
           "matmul precision must be 'float32' or 'bfloat16', got '" + p + "'");
    cpu::set_matmul_precision(p == "bfloat16" ? cpu::Precision::BFloat16
                                              : cpu::Precision::Float32);
  }, py::arg("precision"), "The operand precision of float32 products, for this thread.");
  m.def("get_matmul_precision", [] {
    return cpu::matmul_precision() == cpu::Precision::BFloat16 ? "bfloat16" : "float32";
  });
  m.def("get_num_threads", [] {
    return py::make_tuple(omp_get_max_threads(), cpu::blas_num_threads());
  });
  m.def("set_num_threads", [](int n) {
    expect(n >= 1, "n_threads must be >= 1");
    omp_set_num_threads(n);
  });
  cpu::blas_single_threaded();
}

}  // namespace pymdbn::bind
