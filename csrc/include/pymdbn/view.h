// Non-owning views over row-major arrays (host or device memory). Kernels see only
// these, never Python.
#pragma once
#include <cstdint>

#include "pymdbn/hd.h"

namespace pymdbn {

using index_t = std::int64_t;

// A row-major matrix whose rows are `ld` elements apart (ld >= cols).
template <class T>
struct Mat {
  T* data = nullptr;
  index_t rows = 0, cols = 0, ld = 0;

  Mat() = default;
  PYMDBN_HD Mat(T* d, index_t r, index_t c) : data(d), rows(r), cols(c), ld(c) {}
  PYMDBN_HD Mat(T* d, index_t r, index_t c, index_t l) : data(d), rows(r), cols(c), ld(l) {}
  // A view of non-const T converts to a view of const T.
  template <class U>
  PYMDBN_HD Mat(const Mat<U>& o) : data(o.data), rows(o.rows), cols(o.cols), ld(o.ld) {}

  PYMDBN_HD T* row(index_t i) const { return data + i * ld; }
  PYMDBN_HD T& operator()(index_t i, index_t j) const { return data[i * ld + j]; }
  PYMDBN_HD Mat top(index_t n) const { return Mat(data, n, cols, ld); }
  PYMDBN_HD Mat bottom(index_t n) const { return Mat(data + (rows - n) * ld, n, cols, ld); }
  PYMDBN_HD bool empty() const { return rows == 0 || cols == 0; }
};

template <class T>
using CMat = Mat<const T>;

// A contiguous vector.
template <class T>
struct Vec {
  T* data = nullptr;
  index_t size = 0;
  Vec() = default;
  PYMDBN_HD Vec(T* d, index_t n) : data(d), size(n) {}
  template <class U>
  PYMDBN_HD Vec(const Vec<U>& o) : data(o.data), size(o.size) {}
  PYMDBN_HD T& operator[](index_t i) const { return data[i]; }
};

template <class T>
using CVec = Vec<const T>;

}  // namespace pymdbn
