#include "onednn.h"

#include <omp.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <vector>

#ifdef PYMDBN_HAVE_ONEDNN
#include <dlfcn.h>

#include "oneapi/dnnl/dnnl.h"
#endif

namespace pymdbn::cpu::onednn {

#ifndef PYMDBN_HAVE_ONEDNN

bool compiled() { return false; }
std::string load(const std::string&) {
  return "this build of pymdbn has no oneDNN support (its headers, from "
         "onednn-devel-cpu-gomp, were not found when it was compiled)";
}
bool loaded() { return false; }
std::string describe() { return ""; }
void gemm(bool, bool, index_t, index_t, index_t, float, const std::uint16_t*, index_t,
          const std::uint16_t*, index_t, float, float*, index_t) {
  throw std::logic_error("oneDNN is not available");
}

#else

namespace {

// The C API functions used, resolved from the loaded library.
#define PYMDBN_DNNL_FUNCTIONS(X)                                                          \
  X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait)                         \
  X(dnnl_memory_desc_create_with_strides) X(dnnl_memory_desc_destroy)                     \
  X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)                            \
  X(dnnl_primitive_attr_set_post_ops) X(dnnl_post_ops_create) X(dnnl_post_ops_destroy)    \
  X(dnnl_post_ops_append_sum) X(dnnl_post_ops_append_eltwise)                             \
  X(dnnl_matmul_primitive_desc_create) X(dnnl_primitive_desc_destroy)                     \
  X(dnnl_primitive_create) X(dnnl_primitive_execute) X(dnnl_primitive_destroy)                                   \
  X(dnnl_memory_create) X(dnnl_memory_set_data_handle) X(dnnl_memory_destroy)              \
  X(dnnl_get_effective_cpu_isa) X(dnnl_version)

struct Api {
#define PYMDBN_DECLARE(name) decltype(&::name) name = nullptr;
  PYMDBN_DNNL_FUNCTIONS(PYMDBN_DECLARE)
#undef PYMDBN_DECLARE
  dnnl_engine_t engine = nullptr;
  std::string description;
};

Api api;
bool ok = false;
std::mutex load_mutex;

void check(dnnl_status_t s, const char* what) {
  if (s != dnnl_success)
    throw std::runtime_error(std::string("oneDNN: ") + what + " failed (status " +
                             std::to_string(int(s)) + ")");
}

const char* isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

// One primitive per (shape, layout, alpha, beta) and calling thread, with its memory
// objects: creating a matmul primitive takes tens of microseconds, a CD epoch calls the
// same few shapes hundreds of times.
struct Key {
  bool ta, tb;
  index_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  bool operator==(const Key& o) const {
    return ta == o.ta && tb == o.tb && m == o.m && n == o.n && k == o.k && lda == o.lda &&
           ldb == o.ldb && ldc == o.ldc && alpha == o.alpha && beta == o.beta;
  }
};

struct Entry {
  Key key;
  dnnl_primitive_t prim = nullptr;
  dnnl_memory_t a = nullptr, b = nullptr, c = nullptr;
};

struct ThreadState {
  dnnl_stream_t stream = nullptr;
  std::vector<Entry> cache;  // most recently used last; a handful of shapes per model
};

// Bounded so that a long session over many shapes does not grow without end.
constexpr std::size_t kCacheSize = 32;

void destroy(Entry& e) {
  api.dnnl_primitive_destroy(e.prim);
  api.dnnl_memory_destroy(e.a);
  api.dnnl_memory_destroy(e.b);
  api.dnnl_memory_destroy(e.c);
}

dnnl_memory_desc_t desc(index_t rows, index_t cols, index_t ld, bool trans,
                        dnnl_data_type_t type) {
  // op(X) is rows x cols; stored row-major with leading dimension ld, or transposed.
  dnnl_dims_t dims = {rows, cols};
  dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
  dnnl_memory_desc_t md = nullptr;
  check(api.dnnl_memory_desc_create_with_strides(&md, 2, dims, type, strides),
        "memory_desc_create_with_strides");
  return md;
}

Entry make_entry(const Key& key) {
  Entry e;
  e.key = key;
  dnnl_memory_desc_t ad = desc(key.m, key.k, key.lda, key.ta, dnnl_bf16),
                     bd = desc(key.k, key.n, key.ldb, key.tb, dnnl_bf16),
                     cd = desc(key.m, key.n, key.ldc, false, dnnl_f32);
  dnnl_primitive_attr_t attr = nullptr;
  dnnl_post_ops_t po = nullptr;
  check(api.dnnl_primitive_attr_create(&attr), "primitive_attr_create");
  check(api.dnnl_post_ops_create(&po), "post_ops_create");
  // dst = alpha (A B) + beta dst: the scaling first, then the accumulation.
  if (key.alpha != 1.0f)
    check(api.dnnl_post_ops_append_eltwise(po, dnnl_eltwise_linear, key.alpha, 0.0f),
          "post_ops_append_eltwise");
  if (key.beta != 0.0f)
    check(api.dnnl_post_ops_append_sum(po, key.beta, 0, dnnl_data_type_undef),
          "post_ops_append_sum");
  check(api.dnnl_primitive_attr_set_post_ops(attr, po), "primitive_attr_set_post_ops");
  dnnl_primitive_desc_t pd = nullptr;
  check(api.dnnl_matmul_primitive_desc_create(&pd, api.engine, ad, bd, nullptr, cd, attr),
        "matmul_primitive_desc_create");
  check(api.dnnl_primitive_create(&e.prim, pd), "primitive_create");
  check(api.dnnl_memory_create(&e.a, ad, api.engine, DNNL_MEMORY_NONE), "memory_create");
  check(api.dnnl_memory_create(&e.b, bd, api.engine, DNNL_MEMORY_NONE), "memory_create");
  check(api.dnnl_memory_create(&e.c, cd, api.engine, DNNL_MEMORY_NONE), "memory_create");
  api.dnnl_primitive_desc_destroy(pd);
  api.dnnl_post_ops_destroy(po);
  api.dnnl_primitive_attr_destroy(attr);
  api.dnnl_memory_desc_destroy(ad);
  api.dnnl_memory_desc_destroy(bd);
  api.dnnl_memory_desc_destroy(cd);
  return e;
}

// oneDNN sizes its work split by omp_get_max_threads() when a primitive is created and
// runs it on that many threads: one thread here, whatever the pool, so a product is
// computed the same way for any thread count (gemm.cpp's tiles provide the parallelism).
class OneThread {
 public:
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

}  // namespace

bool compiled() { return true; }

std::string load(const std::string& path) {
  std::lock_guard<std::mutex> lock(load_mutex);
  if (ok) return "";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) return std::string("cannot load oneDNN: ") + dlerror();
  Api a;
#define PYMDBN_RESOLVE(name)                                                   \
  a.name = reinterpret_cast<decltype(a.name)>(dlsym(lib, #name));              \
  if (!a.name) return std::string("oneDNN at ") + path + " lacks " #name;
  PYMDBN_DNNL_FUNCTIONS(PYMDBN_RESOLVE)
#undef PYMDBN_RESOLVE
  const dnnl_version_t* v = a.dnnl_version();
  if (v->major != DNNL_VERSION_MAJOR)
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) +
           " is installed; this build needs version " + std::to_string(DNNL_VERSION_MAJOR) +
           ".x (onednn-cpu-gomp)";
  const dnnl_cpu_isa_t isa = a.dnnl_get_effective_cpu_isa();
  // The ISA levels are bit masks, each containing the ones below it.
  if ((unsigned(isa) & unsigned(dnnl_cpu_isa_avx512_core_bf16)) !=
      unsigned(dnnl_cpu_isa_avx512_core_bf16))
    return "this CPU has neither AVX512_BF16 nor AMX, so oneDNN would emulate bfloat16 "
           "products more slowly than float32 ones";
  if (a.dnnl_engine_create(&a.engine, dnnl_cpu, 0) != dnnl_success)
    return "oneDNN could not create a CPU engine";
  a.description = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                  std::to_string(v->patch) + " (" + isa_name(isa) + ")";
  api = a;
  ok = true;
  return "";
}

bool loaded() { return ok; }
std::string describe() { return ok ? api.description : ""; }

void gemm(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha,
          const std::uint16_t* a, index_t lda, const std::uint16_t* b, index_t ldb, float beta,
          float* c, index_t ldc) {
  if (!ok) throw std::logic_error("oneDNN is not loaded");
  thread_local ThreadState ts;
  OneThread one;
  if (!ts.stream) check(api.dnnl_stream_create(&ts.stream, api.engine, dnnl_stream_default_flags),
                        "stream_create");
  const Key key{ta, tb, m, n, k, lda, ldb, ldc, alpha, beta};
  std::size_t i = 0;
  while (i < ts.cache.size() && !(ts.cache[i].key == key)) ++i;
  if (i == ts.cache.size()) {
    if (ts.cache.size() == kCacheSize) {
      destroy(ts.cache.front());
      ts.cache.erase(ts.cache.begin());
    }
    ts.cache.push_back(make_entry(key));
    i = ts.cache.size() - 1;
  } else if (i + 1 != ts.cache.size()) {  // keep the most recently used last
    std::rotate(ts.cache.begin() + i, ts.cache.begin() + i + 1, ts.cache.end());
    i = ts.cache.size() - 1;
  }
  Entry& e = ts.cache[i];
  check(api.dnnl_memory_set_data_handle(e.a, const_cast<std::uint16_t*>(a)), "set_data_handle");
  check(api.dnnl_memory_set_data_handle(e.b, const_cast<std::uint16_t*>(b)), "set_data_handle");
  check(api.dnnl_memory_set_data_handle(e.c, c), "set_data_handle");
  dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e.a}, {DNNL_ARG_WEIGHTS, e.b}, {DNNL_ARG_DST, e.c}};
  check(api.dnnl_primitive_execute(e.prim, ts.stream, 3, args), "primitive_execute");
  check(api.dnnl_stream_wait(ts.stream), "stream_wait");
}

#endif

}  // namespace pymdbn::cpu::onednn
