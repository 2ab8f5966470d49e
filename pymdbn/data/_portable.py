"""exp, cos, sin, arctan2 and power with the same bits on every CPU, for the phantoms.

NumPy evaluates these functions with SIMD loops that it picks by the CPU (AVX-512, AVX2
or its baseline), and the loops round differently: float32 ``arctan2`` and ``power`` and
float64 ``exp`` differ between AVX-512 and AVX2, float32 ``exp``, ``sin`` and ``cos``
between AVX2 and the baseline. Phantoms drawn from one seed then differed from machine
to machine (5583 brain and 23463 breast pixels of 400 patients between AVX-512 and AVX2).
Here each function is a fixed sequence of operations that IEEE 754 rounds exactly
(``+ - * /``, ``sqrt``, ``rint``, ``frexp``, ``ldexp``, comparisons), evaluated in
float64 and rounded once to the argument's type: float32 arguments give float32
results, anything else float64, as NumPy's functions do. The float64 results are within
a few ulps of exact (``tests/test_phantoms_portable.py``), so float32 results are
correctly rounded but for ties.

With pymdbn's compiled core the functions run as its ``portable_math`` kernel
(``csrc/cpu/portable_math.cpp``, numerics.h's functions), the same operations in the
same order, vectorised and threaded: the same bits, faster. The NumPy code
here is its twin and the fallback.
"""

import numpy as np

__all__ = ["exp", "cos", "sin", "arctan2", "power"]

# ln 2 and pi/2 split into heads with zero low bits (k * head exact for |k| < 2^20) and
# the rest (Cody and Waite's argument reduction).
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
_LOG2E = float.fromhex("0x1.71547652b82fep0")
_PIO2_1 = float.fromhex("0x1.921fb54400000p+0")
_PIO2_2 = float.fromhex("0x1.0b4611a600000p-34")
_PIO2_3 = float.fromhex("0x1.3198a2e037073p-69")
_TWO_OVER_PI = float.fromhex("0x1.45f306dc9c883p-1")
_PI = float.fromhex("0x1.921fb54442d18p+1")
_PI_2 = float.fromhex("0x1.921fb54442d18p+0")
_SQRT1_2 = float.fromhex("0x1.6a09e667f3bcdp-1")

# Taylor coefficients, highest order first (Horner).
_EXP = [1.0 / np.prod(np.arange(1.0, n + 1)) for n in range(13, 1, -1)]  # 1/13! .. 1/2!
_SIN = [(-1.0) ** n / np.prod(np.arange(1.0, 2 * n + 2)) for n in range(8, 0, -1)]
_COS = [(-1.0) ** n / np.prod(np.arange(1.0, 2 * n + 1)) for n in range(9, 1, -1)]
_ATAN = [(-1.0) ** n / (2 * n + 1) for n in range(12, 0, -1)]
_ATANH = [2.0 / (2 * j + 1) for j in range(10, 0, -1)]


def _float_type(x):
    """The result's float type: float32 for float32 arguments, else float64."""
    return np.dtype(np.float32) if np.asarray(x).dtype == np.float32 else np.dtype(np.float64)


def _float64(x):
    """x as a float64 array, and the float type of the result."""
    return np.asarray(x).astype(np.float64), _float_type(x)


def _result(y, dtype, out):
    with np.errstate(over="ignore"):  # float64 beyond float32's range rounds to inf
        if out is not None:
            np.copyto(out, y, casting="same_kind")
            return out
        y = y.astype(dtype, copy=False)
    return y if y.ndim else y[()]


def _horner(z, coefficients):
    p = np.full_like(z, coefficients[0])
    for c in coefficients[1:]:
        p *= z
        p += c
    return p


def _exp64(a):
    with np.errstate(all="ignore"):
        k = np.clip(np.rint(a * _LOG2E), -1100.0, 1100.0)
        k = np.where(np.isnan(k), 0.0, k)
        r = (a - k * _LN2_HI) - k * _LN2_LO
        q = _horner(r, _EXP)
        e = 1.0 + (r + (r * r) * q)
        # 2^k as two exact powers of two (each within the normal range): one rounding,
        # where the result is denormal (numerics.h's exp_ieee computes exactly this).
        k1 = np.trunc(0.5 * k)
        y = (e * np.ldexp(1.0, k1.astype(np.int64))) * np.ldexp(1.0, (k - k1).astype(np.int64))
    y = np.where(a > 709.782712893384, np.inf, y)
    y = np.where(a < -745.1332191019412, 0.0, y)
    return np.where(np.isnan(a), a, y)


def _log64(a):
    """log a: a = 2^e m, m in [sqrt(2)/2, sqrt(2)), log(1 + f) = 2 atanh(f / (2 + f))."""
    with np.errstate(all="ignore"):
        m, e = np.frexp(a)  # m in [0.5, 1)
        low = m < _SQRT1_2
        m = np.where(low, 2.0 * m, m)
        k = e.astype(np.float64) - low
        f = m - 1.0
        s = f / (2.0 + f)
        r = _horner(s * s, _ATANH) * (s * s)
        hfsq = 0.5 * f * f
        y = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
    y = np.where(a > 0, y, np.where(a == 0, -np.inf, np.nan))  # negative or NaN: NaN
    return np.where(a == np.inf, a, y)


def _cos_sin64(a):
    """cos a and sin a: a = q pi/2 + r, |r| <= pi/4 (accurate for |a| below about 10^5),
    the Taylor series of cos r and sin r, the quarter's swaps; NaN for non-finite a."""
    finite = np.isfinite(a)
    with np.errstate(all="ignore"):
        q = np.rint(a * _TWO_OVER_PI)
        q = np.where(finite & (np.abs(q) < 2.0**30), q, 0.0)  # no accuracy left beyond
        r = ((a - q * _PIO2_1) - q * _PIO2_2) - q * _PIO2_3
        z = r * r
        s = r + r * (z * _horner(z, _SIN))
        c = 1.0 - (0.5 * z - z * (z * _horner(z, _COS)))
    # Quarters 0-3 (q mod 4): (cos, sin) = (c, s), (-s, c), (-c, -s), (s, -c).
    quarter = q.astype(np.int64) & 3
    odd, neg_c, neg_s = (quarter & 1) != 0, ((quarter + 1) & 2) != 0, (quarter & 2) != 0
    cv, sv = np.where(odd, s, c), np.where(odd, c, s)
    return (np.where(finite, np.where(neg_c, -cv, cv), np.nan),
            np.where(finite, np.where(neg_s, -sv, sv), np.nan))


def _kernel():
    """pymdbn's compiled ``portable_math``, or None where the CPU backend is not built."""
    global _KERNEL
    if _KERNEL is _UNSET:
        from pymdbn import backend

        _KERNEL = backend.get("cpu").portable_math if "cpu" in backend.BACKENDS else None
    return _KERNEL


_UNSET = object()
_KERNEL = _UNSET


def _compiled(name, dtype, x, y=None, p=0.0, out=None):
    """name(x[, y]) by the kernel, in dtype (float32 or float64), into out if given."""
    x = np.asarray(x, dtype=dtype, order="C")  # 0-d stays 0-d
    if y is not None:
        y, x = (np.asarray(v, dtype=dtype, order="C") for v in np.broadcast_arrays(y, x))
    direct = (out is not None and out.dtype == dtype and out.shape == x.shape
              and out.flags.c_contiguous and out.flags.writeable)
    res = out if direct else np.empty(x.shape, dtype)
    _kernel()(name, x, y, float(p), res)
    if out is not None:
        if not direct:
            np.copyto(out, res, casting="same_kind")
        return out
    return res if res.ndim else res[()]


def exp(x, out=None):
    """e ** x."""
    if _kernel() is not None:
        return _compiled("exp", _float_type(x), x, out=out)
    a, dtype = _float64(x)
    return _result(_exp64(a), dtype, out)


def cos(x, out=None):
    """cos x."""
    if _kernel() is not None:
        return _compiled("cos", _float_type(x), x, out=out)
    a, dtype = _float64(x)
    return _result(_cos_sin64(a)[0], dtype, out)


def sin(x, out=None):
    """sin x."""
    if _kernel() is not None:
        return _compiled("sin", _float_type(x), x, out=out)
    a, dtype = _float64(x)
    return _result(_cos_sin64(a)[1], dtype, out)


def arctan2(y, x, out=None):
    """The angle of (x, y), in [-pi, pi], with NumPy's conventions for signed zeros; NaN
    where either is NaN."""
    dtype = np.result_type(_float_type(y), _float_type(x))
    if _kernel() is not None:
        return _compiled("arctan2", dtype, x, y, out=out)
    b, _ = _float64(y)
    a, _ = _float64(x)
    return _result(_atan2_64(b, a), dtype, out)


def _atan2_64(b, a):
    ay, ax = np.abs(b), np.abs(a)
    big, small = np.where(ay > ax, ay, ax), np.where(ay > ax, ax, ay)
    with np.errstate(all="ignore"):
        t = np.divide(small, big, out=np.zeros_like(big), where=big > 0)
        # atan t for t in [0, 1]: the angle halved twice, atan t = 2 atan(t / (1 +
        # sqrt(1 + t^2))), leaves t <= tan(pi/16) < 0.2, where 13 terms of the Taylor
        # series suffice.
        t = t / (1.0 + np.sqrt(1.0 + t * t))
        t = t / (1.0 + np.sqrt(1.0 + t * t))
        angle = 4.0 * (t + t * ((t * t) * _horner(t * t, _ATAN)))
    angle = np.where(ay > ax, _PI_2 - angle, angle)
    angle = np.where(np.signbit(a), _PI - angle, angle)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, np.copysign(angle, b))


def power(x, p, out=None):
    """x ** p for x >= 0 and a real p > 0, as exp(p log x); NaN for x < 0."""
    if _kernel() is not None:
        return _compiled("power", _float_type(x), x, p=float(p), out=out)
    a, dtype = _float64(x)
    return _result(_exp64(float(p) * _log64(a)), dtype, out)
