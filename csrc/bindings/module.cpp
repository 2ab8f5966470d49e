#include "convert.h"

// The module is _core (CPU kernels) or, built with PYMDBN_BIND_CUDA, _cuda (CUDA kernels).
#ifdef PYMDBN_BIND_CUDA
#define PYMDBN_MODULE _cuda
#else
#define PYMDBN_MODULE _core
#endif

PYBIND11_MODULE(PYMDBN_MODULE, m) {
  m.doc() = "pymdbn's compiled kernels (internal: use the pymdbn package)";
  pymdbn::bind::bind_config(m);
  pymdbn::bind::bind_rbm(m);
  pymdbn::bind::bind_nn(m);
  pymdbn::bind::bind_lrp(m);
  pymdbn::bind::bind_prep(m);
  pymdbn::bind::bind_conv(m);
}
