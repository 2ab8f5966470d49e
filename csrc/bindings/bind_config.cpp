#include <omp.h>

#include "../cpu/blas.h"
#include "../cpu/onednn.h"
#include "convert.h"

namespace pymdbn::bind {

void bind_config(py::module_& m) {
  bind_pool(m);
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
