"""Baselines of the source paper that are not belief networks (PyTorch, optional)."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["SmallCNN", "flip_shift"]


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the CNN baseline needs PyTorch: pip install pymdbn[baselines]") \
            from exc
    return torch


def flip_shift(images, seed, max_shift=None):
    """Random left-right flips and shifts of a batch of images (PyTorch; the CNN's
    augmentation where no augmenter is given).

    Each image is mirrored left-right with probability 1/2 and shifted by up to
    ``max_shift`` pixels along each axis (default: an eighth of the side, at least 1),
    the edge pixels repeated into the space it leaves. All channels of an image get
    the same transform, so registered modalities stay aligned.

    Parameters
    ----------
    images : torch.Tensor or ndarray of shape (N, H, W) or (N, H, W, C)
        Channels last, as :class:`pymdbn.ImageAugmenter` takes them.
    seed : int or sequence of int
        E.g. ``[seed, epoch, batch]``.
    max_shift : int, optional

    Returns
    -------
    Same type and shape as ``images``.
    """
    torch = _torch()
    as_numpy = not isinstance(images, torch.Tensor)
    x = torch.as_tensor(np.asarray(images)) if as_numpy else images
    squeeze = x.ndim == 3
    if squeeze:
        x = x[..., None]
    n, h, w, _ = x.shape
    if max_shift is None:
        max_shift = max(1, min(h, w) // 8)
    state = np.random.SeedSequence(seed).generate_state(2, np.uint32)
    gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    flip = torch.rand(n, generator=gen) < 0.5
    dy = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    dx = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    rows = (torch.arange(h)[None, :] - dy[:, None]).clamp(0, h - 1)         # (N, H)
    cols = torch.arange(w)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols)
    cols = (cols - dx[:, None]).clamp(0, w - 1)                              # (N, W)
    out = x[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    if squeeze:
        out = out[..., 0]
    out = out.contiguous()
    return out.numpy() if as_numpy else out


class SmallCNN(ClassifierMixin, BaseEstimator):
    """A small convolutional network on the modalities stacked as channels.

    ``blocks`` 3x3 convolution blocks (convolution, optional batch normalisation,
    ReLU, 2x2 max-pooling; by default 16, 32, 64, ... channels), one more 3x3
    convolution with the last block's width and ReLU, global average pooling and a
    linear layer, trained with Adam on the cross-entropy. Each modality is z-scored
    with its training mean and standard deviation. All modalities must share one
    image size, of at least ``2**blocks`` pixels a side.

    The defaults (two blocks of 16 and 32 channels, no batch normalisation, no
    augmentation) are the baseline of the phantom experiments. On real scans a deeper
    net with augmentation does better, e.g. ``SmallCNN(blocks=4, batch_norm=True,
    augment='flip_shift', epochs=15)`` (see ``bench/bench_realscan.py``).

    Parameters
    ----------
    epochs : int, default=20
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    random_state : int or None, default=None
    verbose : int, default=0
    blocks : int, default=2
        Number of convolution + pooling blocks.
    channels : sequence of int, optional
        Output channels of each block; default ``16 * 2**i`` for block i.
    batch_norm : bool, default=False
        Batch normalisation after each convolution (the running statistics are
        used for prediction).
    augment : None, 'flip_shift' or callable, default=None
        Augmentation of every training batch: ``'flip_shift'`` is :func:`flip_shift`
        (random left-right flips and shifts by up to an eighth of the side); a
        callable ``augment(images, seed) -> images`` such as
        :class:`pymdbn.ImageAugmenter` gets the batch's z-scored images channels last,
        a float32 ndarray of shape (B, H, W, C) (one channel per modality, sorted by
        name), and the seed ``[random_state, epoch, batch]`` (``random_state`` None
        counts as 0), and returns an array of the same shape. Prediction never
        augments.

    Attributes
    ----------
    classes_ : ndarray
    modalities_ : list of str
    history_ : list of float
        Mean training loss per epoch.
    """

    def __init__(self, epochs=20, batch_size=64, learning_rate=1e-3, random_state=None,
                 verbose=0, blocks=2, channels=None, batch_norm=False, augment=None):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose
        self.blocks = blocks
        self.channels = channels
        self.batch_norm = batch_norm
        self.augment = augment

    def _stack(self, X):
        if sorted(X) != sorted(self.modalities_):
            raise ValueError(f"expected modalities {self.modalities_}, got {sorted(X)}")
        x = np.stack([(np.asarray(X[m], np.float32) - self.mean_[m]) / self.scale_[m]
                      for m in self.modalities_], axis=1)
        if not np.isfinite(x).all():
            raise ValueError("input contains NaN or infinity")
        return x

    def _widths(self):
        blocks = int(self.blocks)
        if blocks != self.blocks or blocks < 1:
            raise ValueError(f"blocks must be a positive integer, got {self.blocks!r}")
        if self.channels is None:
            return [16 * 2 ** i for i in range(blocks)]
        widths = [int(c) for c in self.channels]
        if len(widths) != blocks or min(widths) < 1:
            raise ValueError(f"channels must be {blocks} positive integers (one per block), "
                             f"got {self.channels!r}")
        return widths

    def _augmenter(self):
        if self.augment is None:
            return None
        if isinstance(self.augment, str):
            if self.augment != "flip_shift":
                raise ValueError(f"augment must be None, 'flip_shift' or a callable, "
                                 f"got {self.augment!r}")
            return flip_shift
        if not callable(self.augment):
            raise ValueError(f"augment must be None, 'flip_shift' or a callable, "
                             f"got {self.augment!r}")
        augment = self.augment

        def call(x, seed):
            torch = _torch()
            out = np.asarray(augment(x.numpy(), seed), dtype=np.float32)
            if out.shape != tuple(x.shape):
                raise ValueError(f"augment returned shape {out.shape} for a batch of "
                                 f"shape {tuple(x.shape)}")
            return torch.from_numpy(np.ascontiguousarray(out))
        return call

    def _build(self, c, n_classes):
        torch = _torch()
        nn = torch.nn
        layers, width = [], c
        for out in self._widths():
            layers.append(nn.Conv2d(width, out, 3, padding=1))
            if self.batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        layers += [nn.Conv2d(width, width, 3, padding=1)]
        if self.batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, n_classes)]
        return nn.Sequential(*layers)

    def fit(self, X, y):
        """Fit on a dict of modality -> (N, H, W) images and labels y."""
        torch = _torch()
        augment = self._augmenter()
        self._widths()
        self.modalities_ = sorted(X)
        self.mean_ = {m: float(np.mean(X[m])) for m in self.modalities_}
        self.scale_ = {m: float(np.std(X[m])) or 1.0 for m in self.modalities_}
        self.classes_, yi = np.unique(y, return_inverse=True)
        x = torch.from_numpy(self._stack(X))
        side = min(x.shape[2:])
        if side < 2 ** int(self.blocks):
            raise ValueError(f"{self.blocks} pooling blocks need images of at least "
                             f"{2 ** int(self.blocks)} pixels a side, got {tuple(x.shape[2:])}")
        t = torch.from_numpy(yi.astype(np.int64))
        seed = 0 if self.random_state is None else int(self.random_state)
        if augment is not None and seed < 0:
            raise ValueError(f"augmentation needs a non-negative random_state, got {seed}")
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.net_ = self._build(x.shape[1], len(self.classes_))
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.learning_rate)
        loss_fn = torch.nn.CrossEntropyLoss()
        self.history_ = []
        self.net_.train()
        for epoch in range(self.epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for b, s in enumerate(range(0, len(x), self.batch_size)):
                idx = perm[s:s + self.batch_size]
                if self.batch_norm and len(idx) < 2:
                    continue  # batch normalisation needs two samples
                xb = x[idx]
                if augment is not None:  # channels last for the augmenter, and back
                    xb = augment(xb.permute(0, 2, 3, 1).contiguous(), [seed, epoch, b])
                    xb = xb.permute(0, 3, 1, 2).contiguous()
                opt.zero_grad()
                loss = loss_fn(self.net_(xb), t[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            self.history_.append(total / len(x))
            if self.verbose:
                print(f"[SmallCNN] epoch {epoch + 1}/{self.epochs} loss {total / len(x):.4f}")
        self.net_.eval()
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (N, n_classes)."""
        torch = _torch()
        x = torch.from_numpy(self._stack(X))
        self.net_.eval()
        with torch.no_grad():
            parts = [torch.softmax(self.net_(x[s:s + 512]), dim=1)
                     for s in range(0, len(x), 512)]
        if not parts:
            return np.zeros((0, len(self.classes_)), np.float32)
        return torch.cat(parts).numpy()

    def predict(self, X):
        """Predicted labels."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
