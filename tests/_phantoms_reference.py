"""Pre-vectorisation implementation of :mod:`pymdbn.data.phantoms`, kept as the bit-for-bit reference.

This is ``pymdbn/data/phantoms.py`` as of commit 032c87a, before the rewrite that
vectorised it further (in-place array operations, compact features evaluated in
windows, lesions computed only for the patients that have one); it already drew
and computed per chunk of patients. Everything below this docstring is that file,
unchanged. ``tests/test_phantoms_fast.py`` checks that the current
:func:`pymdbn.data.phantoms.make_phantoms` reproduces it bit for bit, and
``bench/bench_phantoms.py --reference`` times it. Do not edit it to follow later
changes: it defines what "unchanged output" means. One exception, made in both files
alike: NumPy's exp, cos, sin, arctan2 and fractional powers, whose results depend on the
CPU's SIMD level, are replaced by :mod:`pymdbn.data._portable`'s (a mechanical
substitution of the calls, nothing else).

Original module docstring:

Synthetic multimodal cancer phantoms with ground-truth lesion masks.

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

from pymdbn.data import _portable as pm

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
        k = old // size

        def blocks(a):
            return a.reshape(len(a), size, k, size, k)

        return Phantoms(
            X={m: blocks(a).mean(axis=(2, 4), dtype=np.float32) for m, a in self.X.items()},
            y=self.y,
            masks={m: blocks(a).any(axis=(2, 4)) for m, a in self.masks.items()},
            lesion_labels=self.lesion_labels,
            organ_masks={m: blocks(a).any(axis=(2, 4)) for m, a in self.organ_masks.items()},
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
    modality leaves the others unchanged.

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
    for k, start in enumerate(range(0, n_patients, chunk)):
        stop = min(start + chunk, n_patients)
        # Child seeds are keyed by chunk and modality index, never by which
        # modalities were requested, so images do not depend on that choice.
        per_modality = np.random.SeedSequence(
            chunk_root.entropy, spawn_key=chunk_root.spawn_key + (k,)
        ).spawn(len(MODALITIES))
        for m in modalities:
            rngs = [np.random.default_rng(s) for s in per_modality[MODALITIES.index(m)].spawn(3)]
            image, mask, organ = _GENERATORS[m](
                *rngs, _Grid(size), lesion_labels[m][start:stop], difficulty,
                **options.get(m, {})
            )
            X[m][start:stop] = image
            masks[m][start:stop] = mask
            organs[m][start:stop] = organ
    return Phantoms(X, y, masks, lesion_labels, organs)


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


class _Grid:
    """Pixel-centre coordinates of a ``size`` x ``size`` image."""

    def __init__(self, size):
        self.size = size
        self.px = np.float32(2.0 / size)  # pixel spacing in normalised units
        c = ((np.arange(size, dtype=np.float32) + 0.5) * self.px - 1.0).astype(np.float32)
        self.x = c[None, None, :]
        self.y = c[None, :, None]

    def coord(self, index):
        """Normalised coordinate of integer pixel ``index``."""
        return ((index + 0.5) * self.px - 1.0).astype(np.float32)


def _u(rng, low, high, n, k=None):
    """Uniform draws shaped ``(n, 1, 1)``, or ``(n, k)`` when k is given."""
    shape = (n, 1, 1) if k is None else (n, k)
    return rng.uniform(low, high, shape).astype(np.float32)


def _inside(signed, width):
    """Soft indicator of ``signed <= 0`` with a ramp ``width`` wide."""
    return np.clip(0.5 - signed / width, 0.0, 1.0)


def _norm(a, b):
    # np.hypot is an order of magnitude slower than this for float32.
    return np.sqrt(a * a + b * b)


def _lerp(a, b, w):
    return a + w * (b - a)


def _noise(rng, n, grid, *scales):
    """Unit-variance Gaussian random fields, one per correlation length.

    Each scale is a correlation length in normalised units, or a pair
    ``(sx, sy)`` for an anisotropic field. All fields share one white-noise
    draw and one forward FFT.
    """
    size = grid.size
    spec = sfft.rfft2(rng.standard_normal((n, size, size), dtype=np.float32), workers=-1)
    fy = sfft.fftfreq(size).astype(np.float32)[:, None]
    fx = sfft.fftfreq(size).astype(np.float32)[None, :]
    half = size // 2 + 1  # rfft keeps the non-negative x frequencies
    fields = []
    for s in scales:
        sx, sy = (s, s) if np.isscalar(s) else s
        # Correlation lengths in pixels; a Gaussian kernel of width sigma
        # has transfer function exp(-2 pi^2 sigma^2 f^2).
        kx, ky = sx * size / 2, sy * size / 2
        h = pm.exp(-2 * np.pi**2 * ((kx * fx) ** 2 + (ky * fy) ** 2)).astype(np.float32)
        h[0, 0] = 0  # zero mean
        # Filtered unit white noise has variance mean(|h|^2) over the full
        # spectrum; dividing by it gives unit variance without a data pass.
        h /= np.sqrt(np.mean(h**2))
        fields.append(sfft.irfft2(spec * h[:, :half], s=(size, size), workers=-1))
    return fields


def _pick_pixels(rng, region, k=1):
    """Pick ``k`` pixels per patient uniformly among the true pixels of ``region``.

    Returns integer row and column arrays of shape ``(n, k)``. Every
    patient's region must contain at least one pixel.
    """
    n, h, w = region.shape
    counts = np.cumsum(region.reshape(n, -1), axis=1, dtype=np.int64)
    target = np.floor(rng.random((n, k)) * counts[:, -1:]).astype(np.int64)
    # One searchsorted over all rows: offset each row's cumulative counts so
    # that the concatenation stays sorted.
    offset = np.arange(n, dtype=np.int64)[:, None] * (h * w + 1)
    flat = np.searchsorted((counts + offset).ravel(), (target + offset).ravel(), side="right")
    flat = flat.reshape(n, k) - np.arange(n)[:, None] * (h * w)
    return flat // w, flat % w


def _near(rng, g, region, x, y, radius):
    """Pick one pixel of ``region`` within ``radius`` of ``(x, y)``.

    Uniform over the pixels of ``region`` in that disk; where the disk misses
    the region, uniform over the whole region (which must not be empty).
    """
    disk = (g.x - x) ** 2 + (g.y - y) ** 2 < radius**2
    return _pick_pixels(rng, _core(region & disk, region))


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
    """``region`` where it has pixels, else ``fallback`` (tiny images)."""
    return np.where(region.any(axis=(1, 2), keepdims=True), region, fallback)


def _spots(rng, grid, region, k, p, radius_px, amp):
    """Sum of ``k`` compact round spots per patient at pixels of ``region``.

    Each spot is present with probability ``p`` and has a parabolic profile
    of radius ``radius_px`` pixels (range) and peak ``amp`` (range).
    """
    n = region.shape[0]
    rows, cols = _pick_pixels(rng, region, k)
    on = rng.random((n, k)) < p
    radius = _u(rng, *radius_px, n, k) * grid.px
    height = _u(rng, *amp, n, k) * on
    out = np.zeros((n, grid.size, grid.size), np.float32)
    for j in range(k):
        d2 = (grid.x - grid.coord(cols[:, j])[:, None, None]) ** 2 + (
            grid.y - grid.coord(rows[:, j])[:, None, None]
        ) ** 2
        out += height[:, j, None, None] * np.clip(1 - d2 / radius[:, j, None, None] ** 2, 0, 1)
    return out


def _lesion_contrast(rng, n, lesion, difficulty):
    """Per-patient lesion contrast in ``[0, 1]``, zero where there is no lesion."""
    scale = np.float32(1 - 0.75 * difficulty**2)
    return _u(rng, 0.85, 1.0, n) * scale * lesion[:, None, None]


def _noise_sigma(base, difficulty):
    return np.float32(base * (1 + 3 * difficulty**2))


# --------------------------------------------------------------------------
# modality generators: (anatomy rng, lesion rng, noise rng, grid, lesion
# flags, difficulty) -> (image, lesion mask, organ mask)


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
    wobble = 1 + _u(rng, 0, 0.03, n) * pm.cos(2 * theta + _u(rng, 0, 6.3, n))
    wobble += _u(rng, 0, 0.02, n) * pm.cos(3 * theta + _u(rng, 0, 6.3, n))
    rho = np.sqrt((xr / a) ** 2 + (yr / b) ** 2) / wobble
    edge = g.px / b  # one pixel in units of rho

    head = _inside(rho - 1.0, edge)
    skull_out = _inside(rho - 0.94, edge)
    skull_in = _inside(rho - 0.88, edge)
    brain = _inside(rho - 0.85, edge)
    gyri, sulci, fine, bias = _noise(rng, n, g, 0.05, 0.03, 0.012, 0.5)

    # Grey matter cortex around white matter whose boundary folds into gyri.
    wm = _inside(rho - 0.72 + 0.07 * gyri, edge)
    tissue = 0.35 + 0.23 * wm
    sulcus = pm.exp(-((sulci / 0.2) ** 2)) * np.clip((rho - 0.55) / 0.1, 0, 1) * (1 - wm)
    tissue = _lerp(tissue, 0.14, 0.8 * sulcus)
    fissure = pm.exp(-((xr / g.px) ** 2)) * np.clip((np.abs(yr / b) - 0.35) / 0.1, 0, 1)
    tissue = _lerp(tissue, 0.14, 0.9 * fissure)
    for side in (-1, 1):
        nucleus = (xr - side * 0.22 * a) ** 2 + (yr - 0.05) ** 2
        tissue = _lerp(tissue, 0.42, 0.8 * _inside(np.sqrt(nucleus) - 0.09, g.px))
    # Lateral ventricles: two tilted ellipses, frontal horns nearly touching.
    v_off, v_y = _u(rng, 0.05, 0.09, n), _u(rng, -0.1, 0.0, n)
    v_a, v_b = _u(rng, 0.035, 0.075, n), _u(rng, 0.16, 0.26, n)
    ventricles = np.zeros_like(tissue)
    for side in (-1, 1):
        vx, vy = xr - side * v_off, yr - v_y
        tilt = side * np.float32(-0.3)
        ex = vx * pm.cos(tilt) + vy * pm.sin(tilt)
        ey = -vx * pm.sin(tilt) + vy * pm.cos(tilt)
        r = np.sqrt((ex / v_a) ** 2 + (ey / v_b) ** 2)
        ventricles = np.maximum(ventricles, _inside((r - 1) * v_a, g.px))
    tissue = _lerp(tissue, 0.12, ventricles)
    tissue *= 1 + 0.04 * fine

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
    site = (rho < 0.6) & (np.abs(xr) > 0.2 * a) & (np.abs(yr) < 0.5 * b)
    sx = np.where(_u(lrng, 0, 1, n) < 0.5, -1, 1) * 0.42 * a
    sy = np.where(_u(lrng, 0, 1, n) < 0.5, -1, 1) * 0.3 * b
    px, py = cx + sx * pm.cos(rot) - sy * pm.sin(rot), cy + sx * pm.sin(rot) + sy * pm.cos(rot)
    rows, cols = _near(lrng, g, _core(site, _core(core, brain > 0)), px, py,
                       _site_spread(difficulty))
    tx, ty = g.x - g.coord(cols)[:, :, None], g.y - g.coord(rows)[:, :, None]
    radius = np.maximum(_u(lrng, 0.16, 0.26, n), 1.5 * g.px)
    phi = pm.arctan2(ty, tx)
    shape = 1 + _u(lrng, 0, 0.18, n) * pm.cos(3 * phi + _u(lrng, 0, 6.3, n))
    shape += _u(lrng, 0, 0.1, n) * pm.cos(5 * phi + _u(lrng, 0, 6.3, n))
    d = np.sqrt(tx**2 + ty**2) / (radius * shape)
    # A thick, bright enhancing rim around a small necrotic core, in a thin,
    # mildly T1-hypointense oedema halo: the tumour is net brighter than the
    # white matter it replaces (enhancement dominates its area).
    rim_at, necrosis = _u(lrng, 0.45, 0.6, n), _u(lrng, 0.0, 0.25, n)
    target = _lerp(0.45, 1.0, np.clip(2.2 - np.abs(d - rim_at) / 0.2, 0, 1))
    target = _lerp(target, 0.25, np.clip((necrosis - d) / 0.1, 0, 1))
    tissue = _lerp(tissue, target, c * np.clip((1 - d) / 0.1, 0, 1))

    image = 0.72 * (head - skull_out) + 0.07 * (skull_out - skull_in)
    image += 0.15 * (skull_in - brain) + brain * tissue
    image = np.clip(image, 0, 1) * (1 + 0.12 * bias)
    sigma = _noise_sigma(0.02, difficulty)
    real = image + sigma * nrng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * nrng.standard_normal(image.shape, dtype=np.float32)
    organ = brain > 0
    mask = (d < 1) & organ & lesion[:, None, None]
    return np.sqrt(real**2 + imag**2), mask, organ


def _breast(rng, lrng, nrng, g, lesion, difficulty):
    n = lesion.size
    # Standard MLO view in a fixed hanging orientation (right breasts are
    # mirrored): chest wall on the left, nipple to the right; breast size and
    # placement normalised up to residual misregistration.
    s = _misregistration(difficulty)
    cy = _pose(rng, -0.15, 0.15, n, s)
    a, b = _pose(rng, 1.42, 0.22, n, s), _pose(rng, 1.05, 0.1, n, s)
    dx, dy = g.x + 1, g.y - cy
    theta = pm.arctan2(dy / b, dx / a)
    wobble = 1 + _u(rng, 0, 0.03, n) * pm.cos(3 * theta + _u(rng, 0, 6.3, n))
    rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2) / wobble
    edge = g.px / a
    breast = _inside(rho - 1, edge)
    thick = np.sqrt(np.clip(1 - rho**2, 0, 1))
    ducts, lobules, fine = _noise(rng, n, g, (0.08, 0.03), 0.045, 0.012)

    density = _u(rng, 0.1, 0.9, n)
    field = 0.6 * ducts + 0.5 * lobules - 3 * np.clip(rho - 0.6, 0, 1)
    gland = 1 / (1 + pm.exp(-(field + 3 * (density - 0.5)) / 0.6))
    tissue = 0.14 + 0.2 * np.sqrt(thick) + 0.4 * gland * pm.power(thick, 0.3) + 0.03 * fine
    skin = np.clip(1 - np.abs(rho - 1 + edge) / edge, 0, 1)
    tissue += 0.1 * skin

    pa, pb = _pose(rng, 0.52, 0.17, n, s), _pose(rng, 1.3, 0.4, n, s)
    pec_line = (g.x + 1) / pa + pm.power((g.y + 1) / pb, 1.3)
    pec = _inside((pec_line - 1) * pa, g.px)
    muscle = 0.62 + 0.12 * np.clip(1 - (g.x + 1) / pa, 0, 1) + 0.03 * lobules
    body = np.maximum(breast, pec)
    tissue = _lerp(tissue, muscle, pec)

    core = (rho < 0.8) & (pec_line > 1.15)
    fallback = breast > 0.5
    # Benign look-alikes: dense islands, isolated calcifications, an
    # axillary lymph node with fatty hilum, and a (sometimes calcified) vessel.
    tissue += _spots(rng, g, _core(core, fallback), 3, 0.5, (1.5, 3.5), (0.08, 0.2))
    tissue += _spots(rng, g, _core(core, fallback), 3, 0.5, (0.6, 1.0), (0.3, 0.6))
    node = _core((pec_line > 1.05) & (pec_line < 1.5) & (g.y < 0) & (breast > 0.5), fallback)
    node_r, node_c = _pick_pixels(rng, node)
    nd = _norm(g.x - g.coord(node_c)[:, :, None], (g.y - g.coord(node_r)[:, :, None]) / 1.4)
    node_on = _u(rng, 0, 1, n) < 0.4
    node_size = _u(rng, 2.0, 3.0, n) * g.px
    tissue += node_on * (0.22 * _inside(nd - node_size, g.px) - 0.15 * _inside(nd - 0.45 * node_size, g.px))
    vr, vc = _pick_pixels(rng, _core(core, fallback))
    angle = _u(rng, -0.6, 0.6, n)
    along = (g.x - g.coord(vc)[:, :, None]) * pm.cos(angle) + (g.y - g.coord(vr)[:, :, None]) * pm.sin(angle)
    across = -(g.x - g.coord(vc)[:, :, None]) * pm.sin(angle) + (g.y - g.coord(vr)[:, :, None]) * pm.cos(angle)
    across -= _u(rng, -0.8, 0.8, n) * along**2
    vessel = pm.exp(-((across / (0.6 * g.px)) ** 2)) * (np.abs(along) < _u(rng, 0.2, 0.6, n))
    calcified = _u(rng, 0, 1, n) < 0.25
    beads = pm.cos(along / g.px * 2.2) > 0.3
    tissue += vessel * (0.07 + 0.35 * calcified * beads)

    # Malignant lesion: a mass, a microcalcification cluster, or both.
    c = _lesion_contrast(lrng, n, lesion, difficulty)
    kind = _u(lrng, 0, 1, n)
    has_mass, has_calc = kind < 0.85, kind >= 0.6
    # Masses favour the upper-outer quadrant (towards the axilla, top of
    # the MLO view) but can lie anywhere in the gland.
    upper = _u(lrng, 0, 1, n) < 0.6
    px = np.where(upper, np.float32(-0.45), np.float32(-0.35))
    py = cy + np.where(upper, np.float32(-0.35), np.float32(0.25))
    rows, cols = _near(lrng, g, _core(core, fallback), px, py, _site_spread(difficulty))
    mx, my = g.x - g.coord(cols)[:, :, None], g.y - g.coord(rows)[:, :, None]
    tilt, elong = _u(lrng, 0, 3.2, n), _u(lrng, 1.0, 1.5, n)
    mu = mx * pm.cos(tilt) + my * pm.sin(tilt)
    mv = (-mx * pm.sin(tilt) + my * pm.cos(tilt)) * elong
    phi = pm.arctan2(mv, mu)
    spikes = (_u(lrng, 0, 1, n) < 0.4) * _u(lrng, 0.15, 0.35, n)
    outline = 1 + spikes * np.square(np.square(np.square(pm.cos(np.rint(_u(lrng, 5, 9, n)) * phi + _u(lrng, 0, 6.3, n)))))
    radius = np.maximum(_u(lrng, 0.14, 0.24, n), 1.5 * g.px)
    md = _norm(mu, mv) / (radius * outline)
    mass = has_mass * 0.7 * np.clip((1 - md) / 0.3, 0, 1) ** 0.5

    n_dots = 10
    spread = _u(lrng, 1.0, 2.5, n, n_dots)
    dr = np.clip(np.rint(lrng.standard_normal((n, n_dots)) * spread), -4, 4).astype(np.int64)
    dc = np.clip(np.rint(lrng.standard_normal((n, n_dots)) * spread), -4, 4).astype(np.int64)
    dr[:, 0] = dc[:, 0] = 0  # the first dot sits at the cluster centre
    on = np.arange(n_dots) < lrng.integers(4, n_dots + 1, size=(n, 1))
    dot_radius = _u(lrng, 0.8, 1.3, n, n_dots) * g.px
    dot_amp = _u(lrng, 0.35, 0.6, n, n_dots) * on
    calc = np.zeros_like(tissue)
    # The cluster lies in the same quadrant, around the mass when there is one.
    crow, ccol = _near(lrng, g, _core(core, fallback), g.coord(cols)[:, :, None],
                       g.coord(rows)[:, :, None],
                       np.float32(0.15))
    for j in range(n_dots):
        r = np.clip(crow[:, 0] + dr[:, j], 0, g.size - 1)
        col = np.clip(ccol[:, 0] + dc[:, j], 0, g.size - 1)
        d2 = (g.x - g.coord(col)[:, None, None]) ** 2 + (g.y - g.coord(r)[:, None, None]) ** 2
        calc = np.maximum(
            calc,
            dot_amp[:, j, None, None] * np.clip(1 - d2 / dot_radius[:, j, None, None] ** 2, 0, 1),
        )
    calc *= has_calc
    tissue += c * body * (mass + calc)

    image = np.clip(_lerp(np.float32(0.02), tissue, body), 0, 1)
    image += _noise_sigma(0.012, difficulty) * nrng.standard_normal(image.shape, dtype=np.float32)
    organ = body > 0
    mask = ((mass > 0) | (calc > 0)) & organ & lesion[:, None, None]
    return image, mask, organ


def _bone(rng, lrng, nrng, g, lesion, difficulty, site="long"):
    n = lesion.size
    spine = rng.random(n) < 0.4  # drawn whatever ``site``, to keep the stream
    if site != "mixed":
        spine[:] = site == "spine"
    image = np.empty((n, g.size, g.size), np.float32)
    mask = np.empty(image.shape, bool)
    organ = np.empty(image.shape, bool)
    for part, draw in ((~spine, _long_bone), (spine, _spine)):
        if part.any():
            att, soft_att, m, o = draw(rng, lrng, g, lesion[part], difficulty)
            image[part], mask[part], organ[part] = att + soft_att, m, o
    # Film response: attenuation saturates, bone bright on dark air; a linear
    # heel-effect exposure gradient.
    heel = 1 + _u(rng, -0.08, 0.08, n) * g.y
    image = (0.03 + 0.95 * (1 - pm.exp(-image))) * heel
    image += _noise_sigma(0.012, difficulty) * nrng.standard_normal(image.shape, dtype=np.float32)
    return image, mask, organ


def _bone_lesion(lrng, g, n, lesion, difficulty, region, radius, along=None, site=None):
    """Lytic or sclerotic lesion profile and its sign (-1 lytic, +1 sclerotic).

    The centre lies in ``region``, scattered around ``site`` (x, y).
    """
    c = _lesion_contrast(lrng, n, lesion, difficulty)
    rows, cols = _near(lrng, g, region, *site, _site_spread(difficulty))
    lx, ly = g.x - g.coord(cols)[:, :, None], g.y - g.coord(rows)[:, :, None]
    if along is not None:  # stretch along the bone axis given as an angle
        lx, ly = (
            lx * pm.cos(along) - ly * pm.sin(along),
            (lx * pm.sin(along) + ly * pm.cos(along)) / _u(lrng, 1.0, 1.8, n),
        )
    d = _norm(lx, ly) / np.maximum(radius * _u(lrng, 0.8, 1.2, n), 1.5 * g.px)
    lytic = _u(lrng, 0, 1, n) < 0.5
    profile = c * np.clip((1 - d) / 0.3, 0, 1)
    return profile, lytic, d < 1


def _long_bone(rng, lrng, g, lesion, difficulty):
    n = lesion.size
    # Standard projection: shaft vertical and centred, metaphysis at the top.
    s = _misregistration(difficulty)
    alpha = _pose(rng, 0, 0.35, n, s)
    x0, r0 = _pose(rng, 0, 0.12, n, s), _pose(rng, 0.175, 0.035, n, s)
    u = (g.x - x0) * pm.cos(alpha) - g.y * pm.sin(alpha)
    v = (g.x - x0) * pm.sin(alpha) + g.y * pm.cos(alpha)
    u = u - _u(rng, -0.06, 0.06, n) * v**2  # gentle bowing
    _u(rng, 0, 1, n)  # was the end's side; kept so later draws do not shift
    end = np.float32(-1)
    flare = pm.exp(-(((v * end - 1.0) / 0.35) ** 2))
    r_out = r0 * (1 + _u(rng, 0.5, 1.0, n) * flare)
    r_in = r_out - _u(rng, 0.25, 0.4, n) * r0 * (1 - 0.6 * flare)
    soft_r = r0 * _u(rng, 2.4, 3.4, n) * (1 + 0.15 * flare)

    def chord(r):
        return 2 * np.sqrt(np.clip(r**2 - u**2, 0, None))

    trabeculae, soft_tex = _noise(rng, n, g, (0.015, 0.035), 0.15)
    cortex = chord(r_out) - chord(r_in)
    medulla = chord(r_in) * (1 + 0.35 * trabeculae * (0.5 + flare))
    bone_att = (1.3 * cortex + 0.15 * medulla) / (2 * r0)
    soft_att = 0.4 * chord(soft_r) / (2 * soft_r) * (1 + 0.05 * soft_tex)
    organ = np.abs(u) < r_out
    # Benign bone islands (sclerotic look-alikes) and soft-tissue calcification.
    bone_att += _spots(rng, g, _core(np.abs(u) < r_in, organ), 2, 0.4, (0.8, 1.6), (0.3, 0.6)) * organ
    soft_att += _spots(rng, g, _core(~organ & (chord(soft_r) > 0), organ), 2, 0.3, (0.6, 1.0), (0.3, 0.5))

    # Metastases favour the metaphysis, at the flaring end of the shaft; the
    # lesion is wide enough to breach the cortex.
    region = _core((np.abs(u) < 0.5 * r_in) & (v * end > 0.1) & (v * end < 0.8), organ)
    site_x = x0 + 0.55 * end * pm.sin(alpha)
    site_y = 0.55 * end * pm.cos(alpha)
    profile, lytic, inside = _bone_lesion(lrng, g, n, lesion, difficulty, region, r0 * 1.6,
                                          alpha, site=(site_x, site_y))
    bone_att = np.where(lytic, bone_att * (1 - 0.85 * profile), bone_att + 0.9 * profile * organ)
    mask = inside & organ & lesion[:, None, None]
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
    bx = (g.x - xc) * pm.cos(tilt) + (g.y - yc) * pm.sin(tilt)
    by = -(g.x - xc) * pm.sin(tilt) + (g.y - yc) * pm.cos(tilt)
    w = half_w * (1 + 0.04 * (level + 2))  # lower vertebrae are wider
    q = np.square(np.square(bx / w)) + np.square(np.square(by / (height / 2)))
    body_s = np.sqrt(np.sqrt(q))  # superellipse radius, 1 on the outline
    body = _inside((body_s - 1) * height / 2, g.px)
    rim = np.clip(1 - np.square((body_s - 0.93) / 0.09), 0, 1)
    att = 0.55 + 0.08 * trabeculae + 0.5 * rim
    for side in (-1, 1):  # pedicles seen end-on as oval rings
        e = _norm((bx - side * 0.62 * w) / (0.12 * w), (by + 0.18 * height) / (0.2 * height))
        att += 0.45 * np.clip(1 - np.square((e - 1) / 0.45), 0, 1)
    e = _norm(bx / (0.07 * w), (by - 0.12 * height) / (0.25 * height))
    att += 0.3 * _inside((e - 1) * 0.07 * w, g.px)  # spinous process
    bone_att = body * att
    organ = body_s < 1 + g.px / (0.5 * height)
    soft_att = np.broadcast_to(0.3 + 0.12 * (1 - g.x**2), bone_att.shape).copy()
    # Benign look-alikes: bone islands and bowel gas overlying the spine.
    bone_att += _spots(rng, g, _core(body_s < 0.8, organ), 2, 0.4, (0.8, 1.6), (0.3, 0.6)) * organ
    soft_att -= _spots(rng, g, np.ones_like(organ), 5, 0.5, (1.5, 4.0), (0.15, 0.3))

    region = _core(body_s < 0.5, organ)
    # Site: the centre of one vertebral body, the middle three more often.
    lv = np.clip(np.rint(_u(lrng, -2.4, 2.4, n)), -2, 2)
    site_y = y_shift + lv * (height + gap)
    site_x = x0 + curve * site_y**2
    profile, lytic, inside = _bone_lesion(lrng, g, n, lesion, difficulty, region, 0.7 * half_w,
                                          site=(site_x, site_y))
    bone_att = np.where(lytic, bone_att * (1 - 0.85 * profile), bone_att + 0.8 * profile * organ)
    mask = inside & organ & lesion[:, None, None]
    return bone_att, soft_att, mask, organ


_GENERATORS = {"brain": _brain, "breast": _breast, "bone": _bone}
