"""Synthetic multimodal cancer phantoms with ground-truth lesion masks.

The phantoms imitate three imaging modalities that the multimodal deep
belief networks of :mod:`pymdbn` are meant for -- axial brain MRI slices,
mammograms and bone radiographs -- and plant lesions whose exact pixel
masks are known, so that layer-wise relevance propagation maps can be
scored against the truth.

Generation is vectorised over patients: every anatomical structure is a
closed-form function of a shared coordinate grid with per-patient
parameters of shape ``(n, 1, 1)``, and textures are Gaussian-filtered white
noise computed with one batched FFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from . import _portable as pm

__all__ = ["CLASSES", "MODALITIES", "Phantoms", "make_phantoms"]

#: Modalities understood by :func:`make_phantoms`, in generation order.
MODALITIES = ("brain", "breast", "bone")

# Pixels generated per chunk. Keeping each temporary array near 1 MB bounds
# memory whatever ``n_patients`` and ``size`` are, and is about twice as fast
# as large chunks because freed buffers are reused instead of re-mapped.
_CHUNK_PIXELS = 2**18

#: Class names of the phantoms: ``y`` indexes this tuple (0 healthy, 1 cancer).
CLASSES = ("healthy", "cancer")

#: Values of ``bone_site`` understood by :func:`make_phantoms`.
_BONE_SITES = ("long", "spine", "mixed")


@dataclass(frozen=True, eq=False)
class Phantoms:
    """Result of :func:`make_phantoms`.

    Unpacks like the tuple ``X, y, masks, lesion_labels``.

    Attributes
    ----------
    X : dict of str to ndarray
        Modality name -> images, float32 array of shape ``(N, size, size)``.
    y : ndarray
        Patient labels, int64 array of shape ``(N,)``, indices into
        ``classes``: 0 healthy, 1 cancer.
    masks : dict of str to ndarray
        Modality name -> lesion masks, bool array of shape
        ``(N, size, size)``; empty for patients without a lesion there.
    lesion_labels : dict of str to ndarray
        Modality name -> bool array of shape ``(N,)``, true where that
        modality shows a lesion.
    organ_masks : dict of str to ndarray
        Modality name -> bool array of shape ``(N, size, size)`` marking the
        organ that lesions are placed in (brain parenchyma, breast, bone).
        Not part of the tuple unpacking.
    """

    X: dict
    y: np.ndarray
    masks: dict
    lesion_labels: dict
    organ_masks: dict

    def __iter__(self):
        return iter((self.X, self.y, self.masks, self.lesion_labels))

    def resized(self, size):
        """The same patients at ``size`` x ``size`` pixels, as a scan is resized for a model.

        Images are averaged over square blocks (area resampling, which also averages
        the noise); a pixel of a resized lesion or organ mask is set when any pixel of
        its block was, so that small lesions (microcalcifications) are not lost.

        Parameters
        ----------
        size : int
            New side length; must divide the current one.

        Returns
        -------
        Phantoms
        """
        old = next(iter(self.X.values())).shape[-1]
        if not isinstance(size, (int, np.integer)) or size < 1 or old % size:
            raise ValueError(f"size must be a positive divisor of the image side {old}, "
                             f"got {size!r}")
        return Phantoms(
            X={m: _block_mean(a, size) for m, a in self.X.items()},
            y=self.y,
            masks={m: _block_any(a, size) for m, a in self.masks.items()},
            lesion_labels=self.lesion_labels,
            organ_masks={m: _block_any(a, size) for m, a in self.organ_masks.items()},
        )

    @property
    def modalities(self):
        """tuple of str: The modality names, in the order requested."""
        return tuple(self.X)

    @property
    def classes(self):
        """list of str: Class names, ``['healthy', 'cancer']``; ``y`` indexes them, as
        in :class:`pymdbn.data.Dataset`. A model fitted on ``classes[y]`` has named
        ``classes_``."""
        return list(CLASSES)


def make_phantoms(
    n_patients,
    size=64,
    modalities=MODALITIES,
    prevalence=0.5,
    difficulty=0.5,
    random_state=None,
    bone_site="long",
):
    """Generate multimodal cancer phantoms with lesion masks.

    Every patient gets one image per modality. Exactly
    ``round(prevalence * n_patients)`` patients, at shuffled positions, have
    cancer; each of them shows lesions in a random non-empty subset of the
    modalities (uniform over subsets), the others show none. Benign
    look-alikes -- enhancing vessels and choroid plexus in the brain, dense
    tissue islands, isolated calcifications, vessels and lymph nodes in the
    breast, bone islands and bowel gas over the spine -- appear in both
    classes, so no single pixel or bright spot decides the label.

    Parameters
    ----------
    n_patients : int
        Number of patients, at least 1.
    size : int, default 64
        Side length of the square images in pixels, at least 16.
    modalities : sequence of str, default ``('brain', 'breast', 'bone')``
        Any non-empty subset of :data:`MODALITIES`, without repeats.

        - ``'brain'``: T1-weighted post-contrast axial slice -- scalp, skull,
          grey and white matter with sulci, lateral ventricles, deep grey
          nuclei, multiplicative bias field and Rician noise. Lesion: a ring
          enhancing tumour with necrotic core and a dark oedema halo (the
          mask is the whole tumour), in the frontal or parietal white matter
          of either hemisphere.
        - ``'breast'``: mediolateral-oblique mammogram -- breast outline with
          skin line, pectoral muscle triangle, fibroglandular texture of
          random density, either laterality. Lesion: a dense round, oval or
          spiculated mass (in the upper-outer quadrant 60% of the time), a
          microcalcification cluster, or both.
        - ``'bone'``: radiograph of a long-bone shaft (cortex, medulla,
          trabeculae, flaring metaphysis, soft-tissue envelope) or of the
          lumbar spine (vertebral bodies, pedicles, discs). Lesion: lytic
          (dark) or sclerotic (bright), in the metaphysis (wide enough to
          breach the cortex) or centred in a vertebral body.
    prevalence : float, default 0.5
        Fraction of patients with cancer, in ``[0, 1]``.
    difficulty : float, default 0.5
        In ``[0, 1]``; higher values lower lesion contrast (by the factor
        ``1 - 0.75 * difficulty**2``: 0.81 at 0.5, a quarter at 1), raise the
        noise level (by ``1 + 3 * difficulty**2``: 1.75-fold at 0.5, four-fold
        at 1), widen the scatter of lesion centres around their anatomical
        sites (radius ``0.2 + 0.1 * difficulty**2`` in units of half the
        image side) and the residual misregistration (see below).
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Seed for reproducibility; the same seed gives identical arrays.
    bone_site : {'long', 'spine', 'mixed'}, default 'long'
        Which bone the radiographs show: a long-bone shaft in a standard
        projection, the lumbar spine, or a 60/40 mix of the two (an
        unregistered image set).

    Registration assumption: the images emulate *registered* scans, as real
    pipelines feed them -- brain slices registered to an atlas (head centred,
    normalised size, upright), mammograms in a fixed hanging orientation (one
    laterality, chest wall left), radiographs of one standard projection of
    one bone (shaft vertical, metaphysis at the top). Only a residual
    misregistration (translation, scale and rotation jitter of
    ``0.15 + 0.85 * difficulty**2`` times the unregistered pose range) is
    left; at ``difficulty=1`` the pose varies as in unregistered scans. Dense
    (non-convolutional) models rely on this alignment. Lesion positions stay
    random within their anatomical regions.

    Returns
    -------
    Phantoms
        Frozen result with ``X``, ``y``, ``masks``, ``lesion_labels`` and
        ``organ_masks``; unpacks as ``X, y, masks, lesion_labels``.

    Raises
    ------
    ValueError
        If an argument is out of range or a modality is unknown.

    Notes
    -----
    Noise-free intensities lie in ``[0, 1]``; noise may push pixels slightly
    outside. The anatomy, noise and lesion draws of a patient do not depend
    on the labels, so calling twice with the same seed, once with
    ``prevalence=1`` and once with ``prevalence=0``, yields each patient with
    and without its lesions; the difference is zero outside the masks.
    Changing ``difficulty`` rescales lesion contrast, noise, the scatter of
    lesion positions and the residual misregistration, and each modality has its own random stream, so dropping a
    modality leaves the others unchanged. Chunks of patients are generated on
    pymdbn's threads (:func:`pymdbn.set_num_threads`); the arrays do not depend
    on their number.

    Examples
    --------
    >>> X, y, masks, lesion_labels = make_phantoms(8, size=32, random_state=0)
    >>> X["brain"].shape, y.dtype
    ((8, 32, 32), dtype('int64'))
    """
    n_patients = _check_int("n_patients", n_patients, 1)
    size = _check_int("size", size, 16)
    prevalence = _check_fraction("prevalence", prevalence)
    difficulty = _check_fraction("difficulty", difficulty)
    modalities = _check_modalities(modalities)
    if bone_site not in _BONE_SITES:
        raise ValueError(f"bone_site must be one of {_BONE_SITES}, got {bone_site!r}")
    options = {"bone": {"site": bone_site}}

    seed = _seed_sequence(random_state)
    label_seed, chunk_root = seed.spawn(2)
    label_rng = np.random.default_rng(label_seed)
    n_pos = int(round(prevalence * n_patients))
    y = np.zeros(n_patients, dtype=np.int64)
    y[:n_pos] = 1
    label_rng.shuffle(y)
    # Bits of an integer drawn in [1, 2**M) pick a uniform non-empty subset.
    subset = label_rng.integers(1, 2 ** len(MODALITIES), size=n_patients)
    lesion_labels = {
        m: (y == 1) & ((subset >> MODALITIES.index(m)) & 1).astype(bool)
        for m in modalities
    }

    X = {m: np.empty((n_patients, size, size), np.float32) for m in modalities}
    masks = {m: np.empty((n_patients, size, size), bool) for m in modalities}
    organs = {m: np.empty((n_patients, size, size), bool) for m in modalities}
    chunk = max(1, _CHUNK_PIXELS // (size * size))

    def generate(task):
        k, start, m = task
        stop = min(start + chunk, n_patients)
        # Child seeds are keyed by chunk and modality index, never by which
        # modalities were requested, so images do not depend on that choice.
        per_modality = np.random.SeedSequence(
            chunk_root.entropy, spawn_key=chunk_root.spawn_key + (k,)
        ).spawn(len(MODALITIES))
        rngs = [np.random.default_rng(s) for s in per_modality[MODALITIES.index(m)].spawn(3)]
        image, mask, organ = _GENERATORS[m](
            *rngs, _Grid(size), lesion_labels[m][start:stop], difficulty,
            **options.get(m, {})
        )
        X[m][start:stop] = image
        masks[m][start:stop] = mask
        organs[m][start:stop] = organ

    tasks = [(k, start, m) for k, start in enumerate(range(0, n_patients, chunk))
             for m in modalities]
    # Each task has its own seeds and writes its own rows, so running them on threads
    # (NumPy releases the GIL in its loops) gives the same arrays as running them in turn.
    workers = min(_threads(), len(tasks))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            # When a task raises (or on Ctrl-C), map's iterator cancels the tasks not
            # started yet before the error reaches here.
            for _ in pool.map(generate, tasks):
                pass
    else:
        for task in tasks:
            generate(task)
    return Phantoms(X, y, masks, lesion_labels, organs)


def _threads():
    """pymdbn's thread count (:func:`pymdbn.set_num_threads`)."""
    import pymdbn

    return pymdbn.get_num_threads()["openmp"]


def _blocks(a, size):
    """(N, side, side) viewed as (N, size, k, size, k) blocks, k = side // size."""
    k = a.shape[-1] // size
    return a.reshape(len(a), size, k, size, k), k


def _block_mean(a, size):
    """``blocks.mean(axis=(2, 4), dtype=np.float32)`` bit for bit, about 2x faster.

    NumPy sums each block row (the contiguous axis) from +0, sequentially below 8
    elements and with its own routine from 8, then adds the rows in order, and divides
    by k^2; so does this, through whole-array additions instead of an iterator over
    short strided axes (0.92 s for 25600 64x64 images against 0.43 s here).
    """
    b, k = _blocks(a.astype(np.float32, copy=False), size)  # as mean(dtype=float32) casts
    total = None
    for i in range(k):
        if k < 8:
            row = b[:, :, i, :, 0] + np.float32(0)  # +0 start: a block of -0 sums to +0
            for j in range(1, k):
                row += b[:, :, i, :, j]
        else:
            row = b[:, :, i].sum(axis=-1, dtype=np.float32)
        if total is None:
            total = row
        else:
            total += row
    total /= np.float32(k * k)
    return total


def _block_any(a, size):
    """``blocks.any(axis=(2, 4))``, by or-ing the k^2 offsets (0.86 s against 0.07 s)."""
    b, k = _blocks(a, size)
    out = b[:, :, 0, :, 0].copy()
    for i in range(k):
        for j in range(k):
            if i or j:
                out |= b[:, :, i, :, j]
    return out


# --------------------------------------------------------------------------
# argument checks


def _check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_fraction(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _check_modalities(modalities):
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    if not modalities:
        raise ValueError(f"modalities must not be empty; known modalities: {MODALITIES}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; known modalities: {MODALITIES}")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities must not repeat, got {modalities}")
    return modalities


def _seed_sequence(random_state):
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.SeedSequence(random_state)
    raise ValueError(
        "random_state must be None, an int, a numpy SeedSequence or Generator, "
        f"got {type(random_state).__name__}"
    )


# --------------------------------------------------------------------------
# vectorised drawing helpers; all coordinates are normalised to (-1, 1)
#
# Output is bit-for-bit that of the original per-chunk formulation (kept in
# tests/_phantoms_reference.py): every random draw keeps its call, shape and
# order, and every pixel goes through the same float32/float64 operations.
# The speed comes from in-place operations, from evaluating compact features
# only in windows around their centres, and lesions only for the patients
# that have one; the pixels so skipped received exact zeros before, which
# leave sums and maxima unchanged. The in-place chains below follow the
# reference's expressions operation for operation (its plain formulas are
# the readable form); reassociating them, or computing a float64 product in
# float32, would change the output.


class _Grid:
    """Pixel-centre coordinates of a ``size`` x ``size`` image."""

    def __init__(self, size):
        self.size = size
        self.px = np.float32(2.0 / size)  # pixel spacing in normalised units
        c = ((np.arange(size, dtype=np.float32) + 0.5) * self.px - 1.0).astype(np.float32)
        self.x = c[None, None, :]
        self.y = c[None, :, None]
        self._padded = {}

    def coord(self, index):
        """Normalised coordinate of integer pixel ``index``."""
        return ((index + 0.5) * self.px - 1.0).astype(np.float32)

    def padded(self, reach):
        """Coordinates of pixels ``-reach`` to ``size + reach`` inclusive.

        The extra pixel at the end is where :func:`_pick` puts patients whose
        region is empty.
        """
        if reach not in self._padded:
            index = np.arange(-reach, self.size + reach + 1, dtype=np.float32)
            c = ((index + 0.5) * self.px - 1.0).astype(np.float32)
            c[reach:reach + self.size] = self.x.ravel()
            self._padded[reach] = c
        return self._padded[reach]


class _Canvas:
    """Zero images to which compact features are added window by window.

    A round feature of radius below ``radius_px`` pixels is exactly zero
    beyond it, so only the ``(2 reach + 1)**2`` pixels around its centre are
    evaluated, ``reach = ceil(radius_px)``; the nearest pixel left out lies a
    whole pixel further, far beyond any rounding of the radius. Window pixels
    outside the image all go to one spare element after the images, which
    keeps the buffer near the size of the other temporaries (a larger one is
    mapped afresh, page by page, for each call).
    """

    def __init__(self, grid, n, radius_px):
        self.grid = grid
        self.reach = int(np.ceil(radius_px))
        self.data = np.zeros(n * grid.size**2 + 1, np.float32)
        self._offsets = np.arange(-self.reach, self.reach + 1)

    def window(self, rows, cols):
        """Index into ``data`` of the windows centred on pixels ``rows, cols``
        (shape ``(n,)``), and their squared distances to the centres, computed
        as the full-image formula computes them.

        Within one call the index repeats only at the spare element.
        """
        size = self.grid.size
        coords = self.grid.padded(self.reach)
        r = rows[:, None] + self._offsets
        c = cols[:, None] + self._offsets
        dx = coords[c + self.reach] - self.grid.coord(cols)[:, None]
        dy = coords[r + self.reach] - self.grid.coord(rows)[:, None]
        d2 = dx[:, None, :] ** 2 + dy[:, :, None] ** 2
        index = (np.arange(len(rows))[:, None, None] * size + r[:, :, None]) * size + c[:, None, :]
        outside = ((r < 0) | (r >= size))[:, :, None] | ((c < 0) | (c >= size))[:, None, :]
        index[outside] = len(self.data) - 1
        return index, d2

    def image(self):
        """The ``(n, size, size)`` images (a view)."""
        return self.data[:-1].reshape(-1, self.grid.size, self.grid.size)


def _u(rng, low, high, n, k=None):
    """Uniform draws shaped ``(n, 1, 1)``, or ``(n, k)`` when k is given."""
    shape = (n, 1, 1) if k is None else (n, k)
    return rng.uniform(low, high, shape).astype(np.float32)


def _inside(signed, width):
    """Soft indicator of ``signed <= 0`` with a ramp ``width`` wide; overwrites ``signed``."""
    signed /= width
    np.subtract(0.5, signed, out=signed)
    return np.clip(signed, 0.0, 1.0, out=signed)


def _norm(a, b):
    # np.hypot is an order of magnitude slower than this for float32.
    return np.sqrt(a * a + b * b)


def _lerp_into(a, b, w):
    """``a + w * (b - a)`` written into ``a``."""
    step = np.subtract(b, a)
    step *= w
    a += step
    return a


def _clip01(a):
    return np.clip(a, 0, 1, out=a)


def _wave(amp, phase, k, phi):
    """``amp * cos(k * phi + phase)``, a new array."""
    w = k * phi
    w += phase
    pm.cos(w, out=w)
    w *= amp
    return w


def _lesion_rows(lesion):
    """Index of the patients with a lesion (a slice when all have one, which keeps views)."""
    rows = np.flatnonzero(lesion)
    return (slice(None) if rows.size == lesion.size else rows), rows.size


def _noise(rng, n, grid, *scales):
    """Unit-variance Gaussian random fields, one per correlation length.

    Each scale is a correlation length in normalised units, or a pair
    ``(sx, sy)`` for an anisotropic field. All fields share one white-noise
    draw and one forward FFT.
    """
    size = grid.size
    spec = sfft.rfft2(rng.standard_normal((n, size, size), dtype=np.float32), workers=-1)
    half = size // 2 + 1  # rfft keeps the non-negative x frequencies
    return [sfft.irfft2(spec * _gauss_filter(size, s)[:, :half], s=(size, size), workers=-1)
            for s in scales]


def _gauss_filter(size, s):
    """Transfer function of the unit-variance field of correlation length ``s``."""
    sx, sy = (s, s) if np.isscalar(s) else s
    key = (size, sx, sy)
    if key not in _FILTERS:
        fy = sfft.fftfreq(size).astype(np.float32)[:, None]
        fx = sfft.fftfreq(size).astype(np.float32)[None, :]
        # Correlation lengths in pixels; a Gaussian kernel of width sigma
        # has transfer function exp(-2 pi^2 sigma^2 f^2).
        kx, ky = sx * size / 2, sy * size / 2
        h = pm.exp(-2 * np.pi**2 * ((kx * fx) ** 2 + (ky * fy) ** 2)).astype(np.float32)
        h[0, 0] = 0  # zero mean
        # Filtered unit white noise has variance mean(|h|^2) over the full
        # spectrum; dividing by it gives unit variance without a data pass.
        h /= np.sqrt(np.mean(h**2))
        h.flags.writeable = False
        _FILTERS[key] = h
    return _FILTERS[key]


_FILTERS = {}


def _pick_pixels(rng, region, k=1):
    """Pick ``k`` pixels per patient uniformly among the true pixels of ``region``.

    Returns integer row and column arrays of shape ``(n, k)``. Every
    patient's region must contain at least one pixel.
    """
    return _pick(rng.random((region.shape[0], k)), region)


def _pick(u, region):
    """:func:`_pick_pixels` with its uniform draws ``u`` of shape ``(n, k)`` given."""
    n, h, w = region.shape
    flat = region.reshape(n, h * w)
    counts = np.count_nonzero(flat, axis=1)
    target = np.floor(u * counts[:, None]).astype(np.int64)
    # The target-th true pixel of each row, found among all true pixels in
    # row-major order (a cumulative count per pixel costs ten times more).
    # An empty row gets h * w, which is where the original search of its
    # cumulative counts landed.
    pick = np.full(target.shape, h * w, np.int64)
    full = counts > 0
    if full.any():
        first = np.cumsum(counts) - counts
        rows = np.flatnonzero(full)
        pick[full] = np.flatnonzero(flat)[first[rows, None] + target[full]] - rows[:, None] * (h * w)
    return pick // w, pick % w


def _near(u, g, region, x, y, radius):
    """Pick one pixel of ``region`` within ``radius`` of ``(x, y)``, with uniform draws ``u``.

    Uniform over the pixels of ``region`` in that disk; where the disk misses
    the region, uniform over the whole region (which must not be empty).
    """
    disk = (g.x - x) ** 2 + (g.y - y) ** 2 < radius**2
    return _pick(u, _core(region & disk, region))


def _site_spread(difficulty):
    """Radius of the scatter of lesion centres around their anatomical site."""
    return np.float32(0.2 + 0.1 * difficulty**2)


def _misregistration(difficulty):
    """Fraction of the unregistered pose variability left after registration."""
    return np.float32(0.15 + 0.85 * difficulty**2)


def _pose(rng, centre, half_width, n, scale):
    """Pose parameter: the atlas value ``centre`` plus residual misregistration.

    Draws uniformly in ``centre +- scale * half_width`` (shape ``(n, 1, 1)``).
    """
    return np.float32(centre) + scale * _u(rng, -half_width, half_width, n)


def _core(region, fallback):
    """``region`` where it has pixels, else ``fallback`` (tiny images).

    May return ``region`` itself.
    """
    has = region.any(axis=(1, 2), keepdims=True)
    if region.shape == fallback.shape and has.all():
        return region
    return np.where(has, region, fallback)


def _spots(rng, grid, region, k, p, radius_px, amp):
    """Sum of ``k`` compact round spots per patient at pixels of ``region``.

    Each spot is present with probability ``p`` and has a parabolic profile
    of radius ``radius_px`` pixels (range) and peak ``amp`` (range). Returns
    a view.
    """
    n = region.shape[0]
    rows, cols = _pick_pixels(rng, region, k)
    on = rng.random((n, k)) < p
    radius = _u(rng, *radius_px, n, k) * grid.px
    height = _u(rng, *amp, n, k) * on
    canvas = _Canvas(grid, n, radius_px[1])
    for j in range(k):
        index, d2 = canvas.window(rows[:, j], cols[:, j])
        canvas.data[index] += height[:, j, None, None] * np.clip(
            1 - d2 / radius[:, j, None, None] ** 2, 0, 1
        )
    return canvas.image()


def _lesion_contrast(rng, n, lesion, difficulty):
    """Per-patient lesion contrast in ``[0, 1]``, zero where there is no lesion."""
    scale = np.float32(1 - 0.75 * difficulty**2)
    return _u(rng, 0.85, 1.0, n) * scale * lesion[:, None, None]


def _noise_sigma(base, difficulty):
    return np.float32(base * (1 + 3 * difficulty**2))


# --------------------------------------------------------------------------
# modality generators: (anatomy rng, lesion rng, noise rng, grid, lesion
# flags, difficulty) -> (image, lesion mask, organ mask)
#
# Each lesion's draws come first, for all patients, in their original order;
# its pixels are then computed only for the patients that have the lesion
# (zero contrast made it vanish exactly for the others).


def _brain(rng, lrng, nrng, g, lesion, difficulty):
    n = lesion.size
    # Registered to an atlas: head centred, normalised size, upright.
    s = _misregistration(difficulty)
    cx, cy = _pose(rng, 0, 0.06, n, s), _pose(rng, 0, 0.06, n, s)
    a, b = _pose(rng, 0.73, 0.06, n, s), _pose(rng, 0.87, 0.06, n, s)
    rot = _pose(rng, 0, 0.2, n, s)
    dx, dy = g.x - cx, g.y - cy
    xr = dx * pm.cos(rot) + dy * pm.sin(rot)
    yr = -dx * pm.sin(rot) + dy * pm.cos(rot)
    theta = pm.arctan2(yr, xr)
    amp, phase = _u(rng, 0, 0.03, n), _u(rng, 0, 6.3, n)
    wobble = _wave(amp, phase, 2, theta)
    wobble += 1
    amp, phase = _u(rng, 0, 0.02, n), _u(rng, 0, 6.3, n)
    wobble += _wave(amp, phase, 3, theta)
    rho = np.square(xr / a)
    rho += np.square(yr / b)
    np.sqrt(rho, out=rho)
    rho /= wobble
    edge = g.px / b  # one pixel in units of rho

    head = _inside(rho - 1.0, edge)
    skull_out = _inside(rho - 0.94, edge)
    skull_in = _inside(rho - 0.88, edge)
    brain = _inside(rho - 0.85, edge)
    organ = brain > 0
    gyri, sulci, fine, bias = _noise(rng, n, g, 0.05, 0.03, 0.012, 0.5)

    # Grey matter cortex around white matter whose boundary folds into gyri.
    wm = rho - 0.72
    gyri *= 0.07
    wm += gyri
    wm = _inside(wm, edge)
    tissue = wm * 0.23
    tissue += 0.35
    sulcus = sulci
    sulcus /= 0.2
    np.square(sulcus, out=sulcus)
    np.negative(sulcus, out=sulcus)
    pm.exp(sulcus, out=sulcus)
    depth = rho - 0.55
    depth /= 0.1
    sulcus *= _clip01(depth)
    sulcus *= np.subtract(1, wm, out=wm)
    sulcus *= 0.8
    _lerp_into(tissue, 0.14, sulcus)
    fissure = xr / g.px
    np.square(fissure, out=fissure)
    np.negative(fissure, out=fissure)
    pm.exp(fissure, out=fissure)
    depth = np.abs(yr / b)
    depth -= 0.35
    depth /= 0.1
    fissure *= _clip01(depth)
    fissure *= 0.9
    _lerp_into(tissue, 0.14, fissure)
    ny2 = np.square(yr - 0.05)
    for side in (-1, 1):
        nucleus = np.square(xr - side * 0.22 * a)
        nucleus += ny2
        np.sqrt(nucleus, out=nucleus)
        nucleus -= 0.09
        nucleus = _inside(nucleus, g.px)
        nucleus *= 0.8
        _lerp_into(tissue, 0.42, nucleus)
    # Lateral ventricles: two tilted ellipses, frontal horns nearly touching.
    v_off, v_y = _u(rng, 0.05, 0.09, n), _u(rng, -0.1, 0.0, n)
    v_a, v_b = _u(rng, 0.035, 0.075, n), _u(rng, 0.16, 0.26, n)
    ventricles = np.zeros_like(tissue)
    vy = yr - v_y
    for side in (-1, 1):
        vx = xr - side * v_off
        tilt = side * np.float32(-0.3)
        ex = vx * pm.cos(tilt)
        ex += vy * pm.sin(tilt)
        ey = np.negative(vx, out=vx)
        ey *= pm.sin(tilt)
        ey += vy * pm.cos(tilt)
        ex /= v_a
        np.square(ex, out=ex)
        ey /= v_b
        np.square(ey, out=ey)
        ex += ey
        r = np.sqrt(ex, out=ex)
        r -= 1
        r *= v_a
        np.maximum(ventricles, _inside(r, g.px), out=ventricles)
    _lerp_into(tissue, 0.12, ventricles)
    fine *= 0.04
    fine += 1
    tissue *= fine

    core = rho < 0.6
    # Benign look-alikes: enhancing vessels, perivascular spaces, choroid plexus.
    tissue += _spots(rng, g, core, 4, 0.5, (0.7, 1.3), (0.25, 0.5))
    tissue -= _spots(rng, g, core, 2, 0.4, (0.6, 1.0), (0.15, 0.3))
    tissue += _spots(rng, g, _core(ventricles > 0.9, core), 1, 0.7, (1.0, 1.6), (0.4, 0.7))

    # Tumour: oedema, enhancing rim and necrotic core inside an irregular
    # outline; all changes vanish at the outline, which is the mask.
    c = _lesion_contrast(lrng, n, lesion, difficulty)
    # Gliomas grow in the hemispheric white matter: centres lie anywhere in
    # the frontal or parietal white matter of either hemisphere, off the
    # midline and away from the ventricles.
    sx = np.where(_u(lrng, 0, 1, n) < 0.5, -1, 1) * 0.42 * a
    sy = np.where(_u(lrng, 0, 1, n) < 0.5, -1, 1) * 0.3 * b
    pick = lrng.random((n, 1))
    radius = np.maximum(_u(lrng, 0.16, 0.26, n), 1.5 * g.px)
    amp3, phase3 = _u(lrng, 0, 0.18, n), _u(lrng, 0, 6.3, n)
    amp5, phase5 = _u(lrng, 0, 0.1, n), _u(lrng, 0, 6.3, n)
    rim_at, necrosis = _u(lrng, 0.45, 0.6, n), _u(lrng, 0.0, 0.25, n)
    mask = np.zeros(tissue.shape, bool)
    i, n_lesions = _lesion_rows(lesion)
    if n_lesions:
        px, py = cx + sx * pm.cos(rot) - sy * pm.sin(rot), cy + sx * pm.sin(rot) + sy * pm.cos(rot)
        site = core[i] & (np.abs(xr[i]) > 0.2 * a[i]) & (np.abs(yr[i]) < 0.5 * b[i])
        rows, cols = _near(pick[i], g, _core(site, _core(core[i], organ[i])), px[i], py[i],
                           _site_spread(difficulty))
        tx, ty = g.x - g.coord(cols)[:, :, None], g.y - g.coord(rows)[:, :, None]
        phi = pm.arctan2(ty, tx)
        shape = _wave(amp3[i], phase3[i], 3, phi)
        shape += 1
        shape += _wave(amp5[i], phase5[i], 5, phi)
        d = tx**2 + ty**2
        np.sqrt(d, out=d)
        shape *= radius[i]
        d /= shape
        # A thick, bright enhancing rim around a small necrotic core, in a thin,
        # mildly T1-hypointense oedema halo: the tumour is net brighter than the
        # white matter it replaces (enhancement dominates its area).
        target = d - rim_at[i]
        np.abs(target, out=target)
        target /= 0.2
        np.subtract(2.2, target, out=target)
        target = _clip01(target)
        target *= 1.0 - 0.45
        target += 0.45
        w = necrosis[i] - d
        w /= 0.1
        _lerp_into(target, 0.25, _clip01(w))
        np.subtract(1, d, out=w)
        w /= 0.1
        np.multiply(c[i], _clip01(w), out=w)
        tissue[i] = _lerp_into(tissue[i], target, w)
        mask[i] = (d < 1) & organ[i]

    image = head - skull_out
    image *= 0.72
    skull_out -= skull_in
    skull_out *= 0.07
    image += skull_out
    skull_in -= brain
    skull_in *= 0.15
    skull_in += np.multiply(brain, tissue, out=brain)
    image += skull_in
    _clip01(image)
    bias *= 0.12
    bias += 1
    image *= bias
    sigma = _noise_sigma(0.02, difficulty)
    real = nrng.standard_normal(image.shape, dtype=np.float32)
    real *= sigma
    real += image
    imag = nrng.standard_normal(image.shape, dtype=np.float32)
    imag *= sigma
    np.square(real, out=real)
    real += np.square(imag, out=imag)
    return np.sqrt(real, out=real), mask, organ


def _breast(rng, lrng, nrng, g, lesion, difficulty):
    n = lesion.size
    # Standard MLO view in a fixed hanging orientation (right breasts are
    # mirrored): chest wall on the left, nipple to the right; breast size and
    # placement normalised up to residual misregistration.
    s = _misregistration(difficulty)
    cy = _pose(rng, -0.15, 0.15, n, s)
    a, b = _pose(rng, 1.42, 0.22, n, s), _pose(rng, 1.05, 0.1, n, s)
    xa, yb = (g.x + 1) / a, (g.y - cy) / b
    theta = pm.arctan2(yb, xa)
    amp, phase = _u(rng, 0, 0.03, n), _u(rng, 0, 6.3, n)
    wobble = _wave(amp, phase, 3, theta)
    wobble += 1
    rho = xa**2 + yb**2
    np.sqrt(rho, out=rho)
    rho /= wobble
    edge = g.px / a
    breast = _inside(rho - 1, edge)
    fallback = breast > 0.5
    thick = np.square(rho)
    np.subtract(1, thick, out=thick)
    np.sqrt(_clip01(thick), out=thick)
    ducts, lobules, fine = _noise(rng, n, g, (0.08, 0.03), 0.045, 0.012)

    density = _u(rng, 0.1, 0.9, n)
    field = ducts
    field *= 0.6
    field += 0.5 * lobules
    fat = rho - 0.6
    _clip01(fat)
    fat *= 3
    field -= fat
    field += 3 * (density - 0.5)
    np.negative(field, out=field)
    field /= 0.6
    pm.exp(field, out=field)
    field += 1
    gland = np.divide(1, field, out=field)
    tissue = np.sqrt(thick)
    tissue *= 0.2
    tissue += 0.14
    gland *= 0.4
    gland *= pm.power(thick, 0.3, out=thick)
    tissue += gland
    fine *= 0.03
    tissue += fine
    skin = rho - 1
    skin += edge
    np.abs(skin, out=skin)
    skin /= edge
    np.subtract(1, skin, out=skin)
    _clip01(skin)
    skin *= 0.1
    tissue += skin

    pa, pb = _pose(rng, 0.52, 0.17, n, s), _pose(rng, 1.3, 0.4, n, s)
    pec_line = (g.x + 1) / pa + pm.power((g.y + 1) / pb, 1.3)
    pec = pec_line - 1
    pec *= pa
    pec = _inside(pec, g.px)
    muscle = lobules
    muscle *= 0.03
    muscle += 0.62 + 0.12 * np.clip(1 - (g.x + 1) / pa, 0, 1)
    body = np.maximum(breast, pec)
    _lerp_into(tissue, muscle, pec)

    core = _core((rho < 0.8) & (pec_line > 1.15), fallback)
    # Benign look-alikes: dense islands, isolated calcifications, an
    # axillary lymph node with fatty hilum, and a (sometimes calcified) vessel.
    tissue += _spots(rng, g, core, 3, 0.5, (1.5, 3.5), (0.08, 0.2))
    tissue += _spots(rng, g, core, 3, 0.5, (0.6, 1.0), (0.3, 0.6))
    node = _core((pec_line > 1.05) & (pec_line < 1.5) & (g.y < 0) & fallback, fallback)
    node_r, node_c = _pick_pixels(rng, node)
    nd = _norm(g.x - g.coord(node_c)[:, :, None], (g.y - g.coord(node_r)[:, :, None]) / 1.4)
    node_on = _u(rng, 0, 1, n) < 0.4
    node_size = _u(rng, 2.0, 3.0, n) * g.px
    capsule = _inside(nd - node_size, g.px)
    capsule *= 0.22
    nd -= 0.45 * node_size
    hilum = _inside(nd, g.px)
    hilum *= 0.15
    capsule -= hilum
    tissue += np.multiply(node_on, capsule, out=capsule)
    vr, vc = _pick_pixels(rng, core)
    angle = _u(rng, -0.6, 0.6, n)
    ox, oy = g.x - g.coord(vc)[:, :, None], g.y - g.coord(vr)[:, :, None]
    along = ox * pm.cos(angle) + oy * pm.sin(angle)
    across = -ox * pm.sin(angle) + oy * pm.cos(angle)
    bend = np.square(along)
    bend *= _u(rng, -0.8, 0.8, n)
    across -= bend
    vessel = across
    vessel /= 0.6 * g.px
    np.square(vessel, out=vessel)
    np.negative(vessel, out=vessel)
    pm.exp(vessel, out=vessel)
    vessel *= np.abs(along) < _u(rng, 0.2, 0.6, n)
    calcified = _u(rng, 0, 1, n) < 0.25
    beads = along / g.px
    beads *= 2.2
    beads = pm.cos(beads, out=beads) > 0.3
    # float64, as 0.35 * calcified is.
    vessel_att = 0.35 * calcified * beads
    vessel_att += 0.07
    vessel_att *= vessel
    tissue += vessel_att

    # Malignant lesion: a mass, a microcalcification cluster, or both.
    c = _lesion_contrast(lrng, n, lesion, difficulty)
    kind = _u(lrng, 0, 1, n)
    has_mass, has_calc = kind < 0.85, kind >= 0.6
    # Masses favour the upper-outer quadrant (towards the axilla, top of
    # the MLO view) but can lie anywhere in the gland.
    upper = _u(lrng, 0, 1, n) < 0.6
    mass_pick = lrng.random((n, 1))
    tilt, elong = _u(lrng, 0, 3.2, n), _u(lrng, 1.0, 1.5, n)
    spikes = (_u(lrng, 0, 1, n) < 0.4) * _u(lrng, 0.15, 0.35, n)
    lobes, phase = np.rint(_u(lrng, 5, 9, n)), _u(lrng, 0, 6.3, n)
    radius = np.maximum(_u(lrng, 0.14, 0.24, n), 1.5 * g.px)
    n_dots = 10
    spread = _u(lrng, 1.0, 2.5, n, n_dots)
    dr = np.clip(np.rint(lrng.standard_normal((n, n_dots)) * spread), -4, 4).astype(np.int64)
    dc = np.clip(np.rint(lrng.standard_normal((n, n_dots)) * spread), -4, 4).astype(np.int64)
    dr[:, 0] = dc[:, 0] = 0  # the first dot sits at the cluster centre
    on = np.arange(n_dots) < lrng.integers(4, n_dots + 1, size=(n, 1))
    dot_radius = _u(lrng, 0.8, 1.3, n, n_dots) * g.px
    dot_amp = _u(lrng, 0.35, 0.6, n, n_dots) * on
    cluster_pick = lrng.random((n, 1))
    organ = body > 0
    mask = np.zeros(tissue.shape, bool)
    i, n_lesions = _lesion_rows(lesion)
    if n_lesions:
        px = np.where(upper[i], np.float32(-0.45), np.float32(-0.35))
        py = cy[i] + np.where(upper[i], np.float32(-0.35), np.float32(0.25))
        rows, cols = _near(mass_pick[i], g, core[i], px, py, _site_spread(difficulty))
        mx, my = g.x - g.coord(cols)[:, :, None], g.y - g.coord(rows)[:, :, None]
        cos_t, sin_t = pm.cos(tilt[i]), pm.sin(tilt[i])
        mu = mx * cos_t + my * sin_t
        mv = -mx * sin_t + my * cos_t
        mv *= elong[i]
        outline = pm.arctan2(mv, mu)
        outline *= lobes[i]
        outline += phase[i]
        pm.cos(outline, out=outline)
        for _ in range(3):
            np.square(outline, out=outline)
        outline *= spikes[i]
        outline += 1
        md = _norm(mu, mv)
        outline *= radius[i]
        md /= outline
        np.subtract(1, md, out=md)
        md /= 0.3
        mass = has_mass[i] * 0.7 * _clip01(md) ** 0.5

        # The cluster lies in the same quadrant, around the mass when there is one.
        crow, ccol = _near(cluster_pick[i], g, core[i], g.coord(cols)[:, :, None],
                           g.coord(rows)[:, :, None], np.float32(0.15))
        canvas = _Canvas(g, len(crow), 1.3)
        for j in range(n_dots):
            r = np.clip(crow[:, 0] + dr[i, j], 0, g.size - 1)
            col = np.clip(ccol[:, 0] + dc[i, j], 0, g.size - 1)
            index, d2 = canvas.window(r, col)
            canvas.data[index] = np.maximum(
                canvas.data[index],
                dot_amp[i, j, None, None] * np.clip(1 - d2 / dot_radius[i, j, None, None] ** 2, 0, 1),
            )
        calc = canvas.image()
        calc *= has_calc[i]
        tissue[i] += c[i] * body[i] * (mass + calc)
        mask[i] = ((mass > 0) | (calc > 0)) & organ[i]

    tissue -= np.float32(0.02)
    tissue *= body
    tissue += np.float32(0.02)
    image = _clip01(tissue)
    noise = nrng.standard_normal(image.shape, dtype=np.float32)
    noise *= _noise_sigma(0.012, difficulty)
    image += noise
    return image, mask, organ


def _bone(rng, lrng, nrng, g, lesion, difficulty, site="long"):
    n = lesion.size
    spine = rng.random(n) < 0.4  # drawn whatever ``site``, to keep the stream
    if site != "mixed":
        spine[:] = site == "spine"
    if spine.all() or not spine.any():  # one bone for all: no gathering
        image, soft_att, mask, organ = (_spine if spine[0] else _long_bone)(
            rng, lrng, g, lesion, difficulty
        )
        image += soft_att
    else:
        image = np.empty((n, g.size, g.size), np.float32)
        mask = np.empty(image.shape, bool)
        organ = np.empty(image.shape, bool)
        for part, draw in ((~spine, _long_bone), (spine, _spine)):
            att, soft_att, m, o = draw(rng, lrng, g, lesion[part], difficulty)
            att += soft_att
            image[part], mask[part], organ[part] = att, m, o
    # Film response: attenuation saturates, bone bright on dark air; a linear
    # heel-effect exposure gradient.
    heel = 1 + _u(rng, -0.08, 0.08, n) * g.y
    np.negative(image, out=image)
    pm.exp(image, out=image)
    np.subtract(1, image, out=image)
    image *= 0.95
    image += 0.03
    image *= heel
    noise = nrng.standard_normal(image.shape, dtype=np.float32)
    noise *= _noise_sigma(0.012, difficulty)
    image += noise
    return image, mask, organ


def _bone_lesion(lrng, g, lesion, difficulty, bone_att, organ, region, radius, site, gain,
                 along=None):
    """Add a lytic or sclerotic (gain ``gain``) lesion to ``bone_att``; return its mask.

    The centre lies in ``region`` (given for the patients with a lesion
    only), scattered around ``site`` (x, y); ``along`` stretches the lesion
    along the bone axis given as an angle.
    """
    n = lesion.size
    c = _lesion_contrast(lrng, n, lesion, difficulty)
    pick = lrng.random((n, 1))
    stretch = None if along is None else _u(lrng, 1.0, 1.8, n)
    size = _u(lrng, 0.8, 1.2, n)
    lytic = _u(lrng, 0, 1, n) < 0.5
    mask = np.zeros(bone_att.shape, bool)
    i, n_lesions = _lesion_rows(lesion)
    if not n_lesions:
        return mask
    rows, cols = _near(pick[i], g, region, site[0][i], site[1][i], _site_spread(difficulty))
    lx, ly = g.x - g.coord(cols)[:, :, None], g.y - g.coord(rows)[:, :, None]
    if along is not None:
        cos_a, sin_a = pm.cos(along[i]), pm.sin(along[i])
        lx, ly = lx * cos_a - ly * sin_a, (lx * sin_a + ly * cos_a) / stretch[i]
    d = _norm(lx, ly)
    d /= np.maximum(radius[i] * size[i], 1.5 * g.px)
    profile = 1 - d
    profile /= 0.3
    np.multiply(c[i], _clip01(profile), out=profile)
    att, org = bone_att[i], organ[i]
    bone_att[i] = np.where(lytic[i], att * (1 - 0.85 * profile), att + gain * profile * org)
    mask[i] = (d < 1) & org
    return mask


def _long_bone(rng, lrng, g, lesion, difficulty):
    n = lesion.size
    # Standard projection: shaft vertical and centred, metaphysis at the top.
    s = _misregistration(difficulty)
    alpha = _pose(rng, 0, 0.35, n, s)
    x0, r0 = _pose(rng, 0, 0.12, n, s), _pose(rng, 0.175, 0.035, n, s)
    ox = g.x - x0
    u = ox * pm.cos(alpha) - g.y * pm.sin(alpha)
    v = ox * pm.sin(alpha) + g.y * pm.cos(alpha)
    bow = np.square(v)
    bow *= _u(rng, -0.06, 0.06, n)  # gentle bowing
    u -= bow
    _u(rng, 0, 1, n)  # was the end's side; kept so later draws do not shift
    end = np.float32(-1)
    v_end = v * end
    flare = v_end - 1.0
    flare /= 0.35
    np.square(flare, out=flare)
    np.negative(flare, out=flare)
    pm.exp(flare, out=flare)
    r_out = _u(rng, 0.5, 1.0, n) * flare
    r_out += 1
    r_out *= r0
    r_in = 0.6 * flare
    np.subtract(1, r_in, out=r_in)
    r_in *= _u(rng, 0.25, 0.4, n) * r0
    np.subtract(r_out, r_in, out=r_in)
    soft_r = 0.15 * flare
    soft_r += 1
    soft_r *= r0 * _u(rng, 2.4, 3.4, n)
    u2 = np.square(u)

    def chord(r):
        c = np.square(r)
        c -= u2
        np.clip(c, 0, None, out=c)
        np.sqrt(c, out=c)
        c *= 2
        return c

    trabeculae, soft_tex = _noise(rng, n, g, (0.015, 0.035), 0.15)
    bone_att = chord(r_out)  # the cortex, then the attenuation
    medulla = chord(r_in)
    bone_att -= medulla
    trabeculae *= 0.35
    flare += 0.5
    trabeculae *= flare
    trabeculae += 1
    medulla *= trabeculae
    bone_att *= 1.3
    medulla *= 0.15
    bone_att += medulla
    bone_att /= 2 * r0
    soft_chord = chord(soft_r)
    soft_att = 0.4 * soft_chord
    soft_att /= 2 * soft_r
    soft_tex *= 0.05
    soft_tex += 1
    soft_att *= soft_tex
    abs_u = np.abs(u)
    organ = abs_u < r_out
    # Benign bone islands (sclerotic look-alikes) and soft-tissue calcification.
    islands = _spots(rng, g, _core(abs_u < r_in, organ), 2, 0.4, (0.8, 1.6), (0.3, 0.6))
    islands *= organ
    bone_att += islands
    soft_att += _spots(rng, g, _core(~organ & (soft_chord > 0), organ), 2, 0.3, (0.6, 1.0), (0.3, 0.5))

    # Metastases favour the metaphysis, at the flaring end of the shaft; the
    # lesion is wide enough to breach the cortex.
    i, _ = _lesion_rows(lesion)
    region = _core((abs_u[i] < 0.5 * r_in[i]) & (v_end[i] > 0.1) & (v_end[i] < 0.8), organ[i])
    site_x = x0 + 0.55 * end * pm.sin(alpha)
    site_y = 0.55 * end * pm.cos(alpha)
    mask = _bone_lesion(lrng, g, lesion, difficulty, bone_att, organ, region, r0 * 1.6,
                        (site_x, site_y), 0.9, along=alpha)
    return bone_att, soft_att, mask, organ


def _spine(rng, lrng, g, lesion, difficulty):
    n = lesion.size
    # Standard AP projection: vertebral bodies centred at fixed levels.
    s = _misregistration(difficulty)
    x0, curve = _pose(rng, 0, 0.1, n, s), _pose(rng, 0, 0.08, n, s)
    height, gap = _pose(rng, 0.29, 0.03, n, s), _pose(rng, 0.085, 0.015, n, s)
    y_shift, half_w = _pose(rng, 0, 0.2, n, s), _pose(rng, 0.3, 0.04, n, s)
    (trabeculae,) = _noise(rng, n, g, 0.02)
    # Five vertebral bodies along a gently curved axis. Bodies do not
    # overlap, so each image row is drawn only for its nearest body, with
    # per-row body parameters, in a single pass.
    level = np.clip(np.rint((g.y - y_shift) / (height + gap)), -2, 2)
    yc = y_shift + level * (height + gap)
    xc = x0 + curve * yc**2
    tilt = 2 * curve * yc
    cos_t, sin_t = pm.cos(tilt), pm.sin(tilt)
    oy = g.y - yc
    ox = g.x - xc
    bx = ox * cos_t
    bx += oy * sin_t
    by = np.negative(ox, out=ox)
    by *= sin_t
    by += oy * cos_t
    w = half_w * (1 + 0.04 * (level + 2))  # lower vertebrae are wider
    q = bx / w
    np.square(q, out=q)
    np.square(q, out=q)
    qy = by / (height / 2)
    np.square(qy, out=qy)
    q += np.square(qy, out=qy)
    body_s = np.sqrt(q, out=q)
    np.sqrt(body_s, out=body_s)  # superellipse radius, 1 on the outline
    body = body_s - 1
    body *= height
    body /= 2
    body = _inside(body, g.px)
    rim = body_s - 0.93
    rim /= 0.09
    np.square(rim, out=rim)
    np.subtract(1, rim, out=rim)
    _clip01(rim)
    att = trabeculae
    att *= 0.08
    att += 0.55
    rim *= 0.5
    att += rim
    for side in (-1, 1):  # pedicles seen end-on as oval rings
        ex = bx - side * 0.62 * w
        ex /= 0.12 * w
        ey = by + 0.18 * height
        ey /= 0.2 * height
        e = _norm(ex, ey)
        e -= 1
        e /= 0.45
        np.square(e, out=e)
        np.subtract(1, e, out=e)
        _clip01(e)
        e *= 0.45
        att += e
    e = _norm(bx / (0.07 * w), (by - 0.12 * height) / (0.25 * height))
    e -= 1
    e *= 0.07
    e *= w
    process = _inside(e, g.px)  # spinous process
    process *= 0.3
    att += process
    bone_att = np.multiply(body, att, out=att)
    organ = body_s < 1 + g.px / (0.5 * height)
    soft_att = np.broadcast_to(0.3 + 0.12 * (1 - g.x**2), bone_att.shape).copy()
    # Benign look-alikes: bone islands and bowel gas overlying the spine.
    islands = _spots(rng, g, _core(body_s < 0.8, organ), 2, 0.4, (0.8, 1.6), (0.3, 0.6))
    islands *= organ
    bone_att += islands
    soft_att -= _spots(rng, g, np.ones_like(organ), 5, 0.5, (1.5, 4.0), (0.15, 0.3))

    i, _ = _lesion_rows(lesion)
    region = _core(body_s[i] < 0.5, organ[i])
    # Site: the centre of one vertebral body, the middle three more often.
    lv = np.clip(np.rint(_u(lrng, -2.4, 2.4, n)), -2, 2)
    site_y = y_shift + lv * (height + gap)
    site_x = x0 + curve * site_y**2
    mask = _bone_lesion(lrng, g, lesion, difficulty, bone_att, organ, region, 0.7 * half_w,
                        (site_x, site_y), 0.8)
    return bone_att, soft_att, mask, organ


_GENERATORS = {"brain": _brain, "breast": _breast, "bone": _bone}
