"""Statistical tests of the samplers, and reproducibility across thread counts."""

import os
import subprocess
import sys

import numpy as np
import pytest

from pymdbn.backend import reference as ref
from pymdbn import backend
from pymdbn.models.rbm import log_partition_exact
cpu = backend.get("cpu")
from conftest import random_rbm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_mean_matches_probability(seed, dtype):
    # 20000 draws per unit: the standard error is <= 0.0036, test at 5 sigma.
    n = 20000
    p = np.linspace(0.0, 1.0, 11).astype(dtype)
    draws = cpu.sample_bernoulli(np.tile(p, (n, 1)), seed, 1)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(draws.mean(axis=0) - p) <= 5 * se + 1e-12)
    assert draws[:, 0].sum() == 0 and draws[:, -1].sum() == n


def test_gaussian_moments(seed):
    z = cpu.sample_gaussian(np.zeros((4000, 50)), seed, 0).ravel()
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(z**3)) < 5 * np.sqrt(15 / n)  # skewness 0
    assert abs(np.mean(z**4) - 3) < 5 * np.sqrt(96 / n)  # kurtosis 3
    # Neighbouring columns (the two halves of one Box-Muller pair) are uncorrelated.
    z2 = cpu.sample_gaussian(np.zeros((20000, 2)), seed, 1)
    assert abs(np.corrcoef(z2.T)[0, 1]) < 5 / np.sqrt(20000)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_gibbs_sample_means_match_mean_field(seed, visible):
    rng = np.random.default_rng(seed)
    w, bv, bh = random_rbm(rng, 6, 5, np.float64, scale=1.0)
    v = np.tile(rng.random(6), (20000, 1))
    prob, h = cpu.gibbs_hidden(v, w, bh, 2.0, 1, 0)
    se = np.sqrt(prob[0] * (1 - prob[0]) / len(v))
    assert np.all(np.abs(h.mean(axis=0) - prob[0]) <= 5 * se + 1e-12)
    hfix = np.tile((rng.random(5) < 0.5).astype(np.float64), (20000, 1))
    mean, vs = cpu.gibbs_visible(hfix, w, bv, visible, 2.0, 1, 1)
    sd = np.sqrt(mean[0] * (1 - mean[0])) if visible == "bernoulli" else np.ones(6)
    assert np.all(np.abs(vs.mean(axis=0) - mean[0]) <= 5 * sd / np.sqrt(len(v)) + 1e-12)


def test_long_gibbs_chain_samples_the_rbm_distribution(seed):
    rng = np.random.default_rng(seed)
    # A small Bernoulli RBM: the chain's visible marginals match exact marginals.
    w, bv, bh = random_rbm(rng, 4, 3, np.float64, scale=1.0)
    states = ((np.arange(16)[:, None] >> np.arange(4)) & 1).astype(np.float64)
    p = np.exp(-ref.free_energy(states, w, bv, bh) - log_partition_exact(w, bv, bh))
    exact = p @ states
    chains = np.zeros((2000, 4))
    total = np.zeros(4)
    for t in range(60):
        _, h = cpu.gibbs_hidden(chains, w, bh, None, 3, 2 * t)
        _, chains = cpu.gibbs_visible(h, w, bv, "bernoulli", None, 3, 2 * t + 1)
        if t >= 10:
            total += chains.mean(axis=0)
    np.testing.assert_allclose(total / 50, exact, atol=0.02)


def test_ais_estimates_exact_log_partition():
    from pymdbn import RBM

    rng = np.random.default_rng(0)
    X = (rng.random((300, 10)) < np.linspace(0.1, 0.9, 10)).astype(np.float64)
    rbm = RBM(n_components=8, n_iter=20, learning_rate=0.1, random_state=0).fit(X)
    exact = rbm.log_partition("exact")
    est, std = rbm.log_partition("ais", n_runs=200, n_betas=2000, random_state=1,
                                 return_std=True)
    assert abs(est - exact) < max(0.05, 5 * std), (est, exact, std)
    # The log-likelihood is a proper average log-probability (< 0).
    ll = rbm.score_log_likelihood(X, log_z=exact)
    assert -10 * np.log(2) < ll < 0


_REPRO = r"""
import sys, numpy as np, pymdbn
pymdbn.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(3)
X = rng.standard_normal((700, 96)).astype(np.float32)
r = pymdbn.RBM(n_components=64, batch_size=50, n_iter=3, visible="gaussian",
               learning_rate=0.01, momentum=0.5, persistent=False, k=2, clip=6.0,
               random_state=7).fit(X)
Xb = (X > 0).astype(np.float32)
r2 = pymdbn.RBM(n_components=64, batch_size=50, n_iter=3, random_state=7,
                sparsity_cost=0.1).fit(Xb)
np.savez(sys.argv[2], w=r.components_, h=r.transform(X), w2=r2.components_, c=r2.h_samples_,
         g=r2.gibbs(Xb[:40]))
"""


def test_same_seed_same_result_for_1_and_2_threads(tmp_path):
    outs = []
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.npz"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        # cwd outside the source tree, so the installed package is the one imported
        subprocess.run([sys.executable, "-c", _REPRO, str(threads), str(path)], check=True,
                       env=env, cwd=tmp_path)
        outs.append(np.load(path))
    for key in ("w", "h", "w2", "c", "g"):
        np.testing.assert_array_equal(outs[0][key], outs[1][key], err_msg=key)
