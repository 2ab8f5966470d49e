// bfloat16 products on the CPU through oneDNN's matmul primitive (internal to the CPU
// backend). oneDNN is optional: it is loaded at run time (dlopen) from the path Python
// finds (the onednn-cpu-gomp wheel's libdnnl.so.3), so _core neither links it nor needs
// it installed; the build only needs its headers (onednn-devel-cpu-gomp).
#pragma once
#include <cstdint>
#include <string>

#include "pymdbn/view.h"

namespace pymdbn::cpu::onednn {

// Whether this build has the oneDNN code (its headers were found at build time).
bool compiled();

// Loads oneDNN from `path` and checks that the CPU runs bfloat16 products natively
// (AVX512_BF16 or AMX). Returns "" on success, else why bfloat16 is unavailable; the
// first successful load stays.
std::string load(const std::string& path);

// Whether load succeeded; a description (version, ISA) when it did.
bool loaded();
std::string describe();

// c = alpha op(a) op(b) + beta c on one thread, a and b bfloat16 (the high halves of
// float32, as uint16), row-major, float32 accumulation and output. Requires loaded().
// The primitive is created once per shape (and alpha, beta) per calling thread.
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, float alpha,
          const std::uint16_t* a, index_t lda, const std::uint16_t* b, index_t ldb, float beta,
          float* c, index_t ldc);

}  // namespace pymdbn::cpu::onednn
