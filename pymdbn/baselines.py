"""Baselines of the source paper that are not belief networks (PyTorch, optional)."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["SmallCNN"]


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the CNN baseline needs PyTorch: pip install pymdbn[baselines]") \
            from exc
    return torch


class SmallCNN(ClassifierMixin, BaseEstimator):
    """A small convolutional network on the modalities stacked as channels.

    Two 3x3 convolution blocks (16 and 32 channels, ReLU, 2x2 max-pooling), global
    average pooling and a linear layer, trained with Adam on the cross-entropy. Each
    modality is z-scored with its training mean and standard deviation. All
    modalities must share one image size.

    Parameters
    ----------
    epochs : int, default=20
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    random_state : int or None, default=None
    verbose : int, default=0
    """

    def __init__(self, epochs=20, batch_size=64, learning_rate=1e-3, random_state=None,
                 verbose=0):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose

    def _stack(self, X):
        if sorted(X) != sorted(self.modalities_):
            raise ValueError(f"expected modalities {self.modalities_}, got {sorted(X)}")
        x = np.stack([(np.asarray(X[m], np.float32) - self.mean_[m]) / self.scale_[m]
                      for m in self.modalities_], axis=1)
        if not np.isfinite(x).all():
            raise ValueError("input contains NaN or infinity")
        return x

    def fit(self, X, y):
        """Fit on a dict of modality -> (N, H, W) images and labels y."""
        torch = _torch()
        self.modalities_ = sorted(X)
        self.mean_ = {m: float(np.mean(X[m])) for m in self.modalities_}
        self.scale_ = {m: float(np.std(X[m])) or 1.0 for m in self.modalities_}
        self.classes_, yi = np.unique(y, return_inverse=True)
        x = torch.from_numpy(self._stack(X))
        t = torch.from_numpy(yi.astype(np.int64))
        gen = torch.Generator().manual_seed(0 if self.random_state is None
                                            else int(self.random_state))
        torch.manual_seed(0 if self.random_state is None else int(self.random_state))
        c = x.shape[1]
        self.net_ = torch.nn.Sequential(
            torch.nn.Conv2d(c, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(32, len(self.classes_)))
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.learning_rate)
        loss_fn = torch.nn.CrossEntropyLoss()
        for epoch in range(self.epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for s in range(0, len(x), self.batch_size):
                idx = perm[s:s + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(self.net_(x[idx]), t[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            if self.verbose:
                print(f"[SmallCNN] epoch {epoch + 1}/{self.epochs} loss {total / len(x):.4f}")
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (N, n_classes)."""
        torch = _torch()
        with torch.no_grad():
            logits = self.net_(torch.from_numpy(self._stack(X)))
            return torch.softmax(logits, dim=1).numpy()

    def predict(self, X):
        """Predicted labels."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
