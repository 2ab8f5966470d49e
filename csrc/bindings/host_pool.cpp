// A NumPy memory handler (NEP 49) that keeps freed array buffers of 1 MiB and more for
// the next allocation of the same size, installed only around pymdbn's training and
// explaining loops (pymdbn.backend.array_pool). Those loops allocate the same
// temporaries batch after batch; glibc serves each large one with a fresh mmap, whose
// pages the kernel faults in and zeroes on first touch: 14-19% of a convolutional
// epoch's CPU time here.
// Bound into _core only: CUDA arrays have their own allocators.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace pymdbn::bind {

namespace py = pybind11;

namespace {

// numpy/ndarraytypes.h, version 1 (NumPy >= 1.22), whose layout NumPy keeps for ABI.
struct DataMemAllocator {
  void* ctx;
  void* (*malloc)(void* ctx, std::size_t size);
  void* (*calloc)(void* ctx, std::size_t nelem, std::size_t elsize);
  void* (*realloc)(void* ctx, void* ptr, std::size_t new_size);
  void (*free)(void* ctx, void* ptr, std::size_t size);
};
struct DataMemHandler {
  char name[127];
  std::uint8_t version;
  DataMemAllocator allocator;
};
// Indices in NumPy's C-API table (numpy/_core/code_generators/numpy_api.py), part of
// its ABI since 1.22.
constexpr int kSetHandler = 304, kGetHandler = 305;

// Every block carries a header before the pointer NumPy sees: its size and a tag, so
// free and realloc need not trust the size NumPy passes. 64 bytes keep malloc's
// 16-byte alignment.
constexpr std::size_t kHeader = 64;
constexpr std::uint64_t kTag = 0x706d64626e706f6fULL;  // "pmdbnpoo"
constexpr std::size_t kMinPooled = std::size_t(1) << 20;

struct Header {
  std::size_t size;
  std::uint64_t tag;
};

class Pool {
 public:
  void* take(std::size_t size) {
    if (size < kMinPooled) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it == free_.end()) return nullptr;
    void* raw = it->second;
    free_.erase(it);
    cached_ -= size;
    ++hits_;
    return raw;
  }
  // True when the pool took the block.
  bool keep(void* raw, std::size_t size) {
    if (size < kMinPooled) return false;
    std::lock_guard<std::mutex> lock(mu_);
    if (active_ == 0 || cached_ + size > cap_) return false;
    free_.emplace(size, raw);
    cached_ += size;
    return true;
  }
  void enter() {
    std::lock_guard<std::mutex> lock(mu_);
    ++active_;
  }
  void leave() {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (active_ > 0 && --active_ == 0) {
        for (auto& kv : free_) drop.push_back(kv.second);
        free_.clear();
        cached_ = 0;
      }
    }
    for (void* p : drop) std::free(p);
  }
  py::dict stats() {
    std::lock_guard<std::mutex> lock(mu_);
    py::dict d;
    d["active"] = active_;
    d["cached_bytes"] = cached_;
    d["cached_blocks"] = free_.size();
    d["cap_bytes"] = cap_;
    d["hits"] = hits_;
    return d;
  }
  void set_cap(std::size_t cap) {
    std::lock_guard<std::mutex> lock(mu_);
    cap_ = cap;
  }

 private:
  std::mutex mu_;
  std::multimap<std::size_t, void*> free_;
  // At most 2 GiB or an eighth of the machine's memory: the pool holds only what the
  // loop frees and allocates again, at 128x128 a convolutional epoch's 0.3-1 GB.
  static std::size_t default_cap() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const std::size_t two_gib = std::size_t(2) << 30;
    if (pages <= 0 || page <= 0) return two_gib;
    return std::min(two_gib, std::size_t(pages) * std::size_t(page) / 8);
  }
  std::size_t cached_ = 0, cap_ = default_cap();
  std::uint64_t hits_ = 0;
  int active_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: arrays may outlive the module's teardown
  return *p;
}

void* user_of(void* raw, std::size_t size) {
  auto* h = static_cast<Header*>(raw);
  h->size = size;
  h->tag = kTag;
  return static_cast<char*>(raw) + kHeader;
}

Header* header_of(void* ptr) {
  auto* h = reinterpret_cast<Header*>(static_cast<char*>(ptr) - kHeader);
  if (h->tag != kTag) std::abort();  // not ours: freeing it would corrupt the heap
  return h;
}

bool too_big(std::size_t size) { return size > SIZE_MAX - kHeader; }

// NumPy's own handler asks for transparent huge pages on blocks of 4 MiB and more
// (numpy/_core/src/multiarray/alloc.c), which cuts a fresh block's page faults 512-fold
// where THP is in 'madvise' mode; so must this one, for the blocks it does not reuse
// (an inference loop keeps every chunk's output): without it, 3 passes of 200 128x128
// images through a 5x5x32 convolution took 521 k faults against NumPy's 22 k.
constexpr std::size_t kHugePageMin = std::size_t(1) << 22;

void advise_huge(void* user, std::size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (size < kHugePageMin) return;
  const std::uintptr_t page = 4096, p = reinterpret_cast<std::uintptr_t>(user);
  const std::uintptr_t start = (p + page - 1) / page * page;
  madvise(reinterpret_cast<void*>(start), size - (start - p), MADV_HUGEPAGE);
#else
  (void)user;
  (void)size;
#endif
}

void* pool_malloc(void*, std::size_t size) {
  if (too_big(size)) return nullptr;
  if (void* raw = pool().take(size)) return user_of(raw, size);
  void* raw = std::malloc(kHeader + size);
  if (raw == nullptr) return nullptr;
  void* user = user_of(raw, size);
  advise_huge(user, size);
  return user;
}

void* pool_calloc(void*, std::size_t nelem, std::size_t elsize) {
  if (elsize != 0 && nelem > SIZE_MAX / elsize) return nullptr;
  const std::size_t size = nelem * elsize;
  if (too_big(size)) return nullptr;
  if (void* raw = pool().take(size)) {
    std::memset(static_cast<char*>(raw) + kHeader, 0, size);
    return user_of(raw, size);
  }
  // Fresh memory from calloc: glibc maps zero pages for large blocks without writing them.
  void* raw = std::calloc(1, kHeader + size);
  if (raw == nullptr) return nullptr;
  void* user = user_of(raw, size);
  advise_huge(user, size);
  return user;
}

void* pool_realloc(void* ctx, void* ptr, std::size_t size) {
  if (ptr == nullptr) return pool_malloc(ctx, size);
  if (too_big(size)) return nullptr;
  void* raw = std::realloc(header_of(ptr), kHeader + size);
  return raw == nullptr ? nullptr : user_of(raw, size);
}

void pool_free(void*, void* ptr, std::size_t) {
  if (ptr == nullptr) return;
  Header* h = header_of(ptr);
  const std::size_t size = h->size;
  if (!pool().keep(h, size)) std::free(h);
}

// The name NumPy reports (get_handler_name) for arrays allocated here.
DataMemHandler g_handler = {"pymdbn_pool", 1,
                            {nullptr, pool_malloc, pool_calloc, pool_realloc, pool_free}};

using SetHandlerFn = PyObject* (*)(PyObject*);
using GetHandlerFn = PyObject* (*)();

struct NumpyApi {
  SetHandlerFn set = nullptr;
  GetHandlerFn get = nullptr;
  std::string unavailable;  // why the pool is off, empty when it is on
};

// The two C-API functions, checked against each other before use: GetHandler must
// return a "mem_handler" capsule whose name is what numpy's get_handler_name reports.
const NumpyApi& numpy_api() {
  static NumpyApi api = [] {
    NumpyApi a;
    try {
      py::module_ core;
      py::object get_name;
      try {
        core = py::module_::import("numpy._core._multiarray_umath");
        get_name = py::module_::import("numpy._core.multiarray").attr("get_handler_name");
      } catch (py::error_already_set&) {  // NumPy 1.x
        core = py::module_::import("numpy.core._multiarray_umath");
        get_name = py::module_::import("numpy.core.multiarray").attr("get_handler_name");
      }
      py::capsule table = core.attr("_ARRAY_API");
      void** fns = static_cast<void**>(PyCapsule_GetPointer(table.ptr(), nullptr));
      if (fns == nullptr) throw py::error_already_set();
      auto get = reinterpret_cast<GetHandlerFn>(fns[kGetHandler]);
      py::object current = py::reinterpret_steal<py::object>(get());
      if (!current || !PyCapsule_IsValid(current.ptr(), "mem_handler")) {
        a.unavailable = "NumPy's PyDataMem_GetHandler did not return a mem_handler capsule";
        return a;
      }
      auto* h = static_cast<DataMemHandler*>(PyCapsule_GetPointer(current.ptr(), "mem_handler"));
      const std::string expected = py::str(get_name());
      if (h == nullptr || h->version != 1 || expected != std::string(h->name)) {
        a.unavailable = "NumPy's memory handler API is not the one pymdbn knows (version 1)";
        return a;
      }
      a.get = get;
      a.set = reinterpret_cast<SetHandlerFn>(fns[kSetHandler]);
    } catch (py::error_already_set& e) {
      a.unavailable = std::string("NumPy's C API could not be read: ") + e.what();
    }
    return a;
  }();
  return api;
}

}  // namespace

// Installs the pool's handler in the current context and returns the previous handler,
// or None where NumPy's API is not as expected (the pool then stays off).
py::object pool_enter() {
  const NumpyApi& api = numpy_api();
  if (api.set == nullptr) return py::none();
  py::capsule handler(static_cast<void*>(&g_handler), "mem_handler");
  pool().enter();
  PyObject* old = api.set(handler.ptr());
  if (old == nullptr) {
    pool().leave();
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(old);
}

void pool_leave(py::object previous) {
  const NumpyApi& api = numpy_api();
  if (previous.is_none() || api.set == nullptr) return;
  PyObject* cur = api.set(previous.ptr());
  if (cur == nullptr) throw py::error_already_set();
  Py_DECREF(cur);
  pool().leave();
}

void bind_pool(py::module_& m) {
  m.def("pool_enter", &pool_enter,
        "Install pymdbn's caching memory handler for NumPy arrays in this context; returns "
        "the previous handler (None where the pool is unavailable).");
  m.def("pool_leave", &pool_leave, py::arg("previous"),
        "Restore the previous handler; the last leave frees the cached blocks.");
  m.def("pool_stats", [] { return pool().stats(); });
  m.def("pool_set_cap", [](std::size_t cap) { pool().set_cap(cap); }, py::arg("cap_bytes"));
  m.def("pool_unavailable", [] { return numpy_api().unavailable; });
}

}  // namespace pymdbn::bind
