#include <omp.h>

#include "convert.h"

namespace pymdbn::bind {

void bind_config(py::module_& m) {
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
    return d;
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
