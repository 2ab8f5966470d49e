"""A device backend's op called with host (NumPy) arrays: upload, run, bring back.

The kernel tests compare every backend with the NumPy twins on the same NumPy inputs;
a device backend's ops take device arrays, so each is wrapped by :func:`host_adapter`:
NumPy arguments are uploaded, the op runs, the NumPy arguments it wrote in place get
the device values back, and results come back as NumPy arrays. A call with any device
array passes through untouched (one extra Python call), so a host array mixed in among
device arrays is refused by the bindings rather than silently copied.
"""

import numpy as np

from pymdbn.backend import device_of

__all__ = ["HOST_ARGS", "host_adapter"]

#: Arguments (by position) that the bindings read on the host in every backend
#: (cd_epoch's ``order``, AIS's ``betas``): never uploaded.
HOST_ARGS = {"cd_epoch": {1}, "ais_log_weights": {4}}


def _is_host(value):
    return isinstance(value, np.ndarray) and device_of(value) == "cpu"


def host_adapter(name, fn, upload, download):
    """``fn`` (op ``name`` of a device backend) that also takes NumPy arrays.

    Parameters
    ----------
    upload : callable
        ``upload(value, copy)``: with ``copy``, a NumPy array -> a device copy
        (read-only when the array is, so the bindings refuse it as an output as they
        refuse the host array); any other value -> the value as the bindings take it
        (a DLPack array as a view with ``__cuda_array_interface__``, say).
    download : callable
        A device array -> a NumPy array; any other value unchanged.
    """
    host_only = HOST_ARGS.get(name, set())

    def call(*args, **kwargs):
        values = (*args, *kwargs.values())
        if any(device_of(v) != "cpu" for v in values):
            return fn(*(a if i in host_only else upload(a, False) for i, a in enumerate(args)),
                      **{k: upload(v, False) for k, v in kwargs.items()})
        dev_args = [a if i in host_only else upload(a, True) for i, a in enumerate(args)]
        dev_kwargs = {k: upload(v, True) for k, v in kwargs.items()}
        out = fn(*dev_args, **dev_kwargs)
        pairs = [(h, d) for h, d in zip(values, (*dev_args, *dev_kwargs.values()))
                 if _is_host(h) and d is not h]
        for h, d in pairs:
            if h.flags.writeable:  # written in place, or read only: the same values
                h[...] = download(d)
        def back(value):  # lrp_dense's overwrite_x: the result is x itself
            return args[0] if args and value is dev_args[0] else download(value)

        return tuple(map(back, out)) if isinstance(out, tuple) else back(out)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = fn.__doc__
    return call
