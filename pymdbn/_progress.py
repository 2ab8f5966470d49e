"""A minimal carriage-return progress bar on stderr (no third-party dependency)."""

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Progress of one training phase, redrawn in place on ``stream``.

    Parameters
    ----------
    total : int
        Number of steps (epochs) in the phase.
    desc : str
        Label printed before the bar, e.g. ``"pretrain brain layer 1/2"``.
    enabled : bool, default=True
        When false every method is a no-op, so callers need no ``if verbose``.
    stream : file-like, default=sys.stderr
    width : int, default=20
        Characters of the bar.
    """

    def __init__(self, total, desc, enabled=True, stream=None, width=20):
        self.total = max(int(total), 0)
        self.desc = desc
        self.enabled = bool(enabled)
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.n = 0
        self._last = 0
        self._postfix = {}
        self._note = ""
        self.t0 = time.perf_counter()
        if self.enabled:
            self._draw({})

    def _draw(self, postfix):
        filled = self.width * self.n // self.total if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in postfix.items())
        elapsed = time.perf_counter() - self.t0
        line = f"{self.desc} [{bar}] {self.n}/{self.total} {elapsed:.1f}s {info}"
        if self._note:
            line = f"{line.rstrip()}; {self._note}"
        # Pad with spaces so a shorter line fully covers the previous one.
        self.stream.write("\r" + line.ljust(self._last))
        self._last = len(line)
        self.stream.flush()

    def update(self, n=1, **postfix):
        """Advance by ``n`` steps and show ``postfix`` (e.g. ``loss=0.31``)."""
        if self.enabled:
            self.n += n
            self._postfix = postfix
            self._draw(postfix)

    def note(self, text):
        """Append ``text`` to the line (e.g. why the phase ended before ``total``); it
        stays there, after the last postfix, until :meth:`close`."""
        if self.enabled and text:
            self._note = str(text)
            self._draw(self._postfix)

    def close(self):
        """End the line so the next phase starts on a fresh one."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
