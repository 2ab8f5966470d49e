#include "convert.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "pymdbn's compiled kernels (internal: use the pymdbn package)";
  pymdbn::bind::bind_config(m);
  pymdbn::bind::bind_rbm(m);
  pymdbn::bind::bind_nn(m);
  pymdbn::bind::bind_lrp(m);
  pymdbn::bind::bind_prep(m);
}
