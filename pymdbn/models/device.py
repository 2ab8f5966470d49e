"""Where an estimator computes: its ``device`` parameter.

Fitted attributes always live on the host as NumPy arrays, whatever the device: models
save, load, pickle and compare as before, and a model trained on the GPU predicts on the
CPU. ``device='cuda'`` moves the work: a fit uploads the data and the parameters once,
runs every epoch on the GPU (the arrays' device picks the kernels, see
:mod:`pymdbn.backend`) and brings the parameters back at the end; inference uploads the
parameters it needs (megabytes: well under a millisecond each on PCIe) and the input,
and returns results on the caller's device (NumPy for NumPy input, CuPy for CUDA input).
"""

from contextlib import contextmanager

from sklearn.utils.validation import validate_data

from pymdbn import backend

__all__ = ["DeviceMixin", "arrays_on", "as_input", "validated", "to_caller",
           "is_device_array"]


class DeviceMixin:
    """``model.to(device)``, as in PyTorch, for estimators with a ``device`` parameter."""

    def to(self, device):
        """Compute on ``device`` (``'cpu'`` or ``'cuda'``) from now on.

        Fitted arrays are NumPy arrays on every device, so nothing is copied here; the
        kernels of ``device`` run the next fit, prediction or explanation.

        Returns
        -------
        self
        """
        return self.set_params(device=backend.check_device(device))


def is_device_array(X):
    """Whether ``X`` lives on a GPU (``__cuda_array_interface__``)."""
    return backend.device_of(X) != "cpu"


@contextmanager
def arrays_on(estimator, names, device, keep=False):
    """The estimator's array attributes ``names`` on ``device`` inside the block, and the
    products in its ``dtype``'s precision (:func:`pymdbn.backend.matmul_precision`).

    With ``keep`` (training) their values at the end of the block are brought back to
    the host; without it (inference, or host copies taken inside a device block) the
    arrays they held before are put back, saving the download. Arrays already on
    ``device`` are not copied.
    """
    saved = {name: getattr(estimator, name) for name in names}
    for name, value in saved.items():
        setattr(estimator, name, backend.to_device(value, device))
    try:
        # The products in the estimator's precision ('bfloat16' for dtype='bfloat16').
        with backend.matmul_precision(backend.precision_of(getattr(estimator, "dtype", None)),
                                      device):
            yield
    finally:
        for name in names:
            value = backend.to_device(getattr(estimator, name), "cpu") if keep else saved[name]
            setattr(estimator, name, value)


def as_input(X, dtype, n_features, device, caller):
    """A device array ``X`` checked as scikit-learn's ``validate_data`` checks host
    input (2-d, samples, features, finite) and made C-contiguous in ``dtype`` on
    ``device``, without a trip to the host."""
    xp = backend.namespace(X)
    if X.ndim != 2:
        raise ValueError(f"{caller}: expected a 2-d array, got shape {tuple(X.shape)}")
    if X.shape[0] < 1:
        raise ValueError(f"{caller}: found array with 0 sample(s) (shape={tuple(X.shape)})")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {caller} is expecting "
                         f"{n_features} features as input.")
    X = xp.ascontiguousarray(X, dtype=dtype)
    if not bool(xp.isfinite(X).all()):
        raise ValueError(f"{caller}: input contains NaN or infinity")
    return backend.to_device(X, device)


def validated(estimator, X, *, reset, dtype, device):
    """``X`` checked by ``validate_data`` (host input) or :func:`as_input` (device input,
    where ``reset`` records ``n_features_in_``), C-contiguous in ``dtype``, on
    ``device``. A list of dtypes keeps X's when listed, else takes the first, as
    ``validate_data`` does."""
    if not is_device_array(X):
        X = validate_data(estimator, X, reset=reset, dtype=dtype, order="C",
                          ensure_min_samples=1)
        return backend.to_device(X, device)
    if isinstance(dtype, list):
        dtype = X.dtype if X.dtype in dtype else dtype[0]
    X = as_input(X, dtype, None if reset else estimator.n_features_in_, device,
                 type(estimator).__name__)
    if reset:
        estimator.n_features_in_ = X.shape[1]
        estimator.__dict__.pop("feature_names_in_", None)
    return X


def to_caller(result, X):
    """``result`` on the device the caller's input ``X`` came from."""
    return backend.to_device(result, backend.device_of(X))
