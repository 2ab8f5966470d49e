"""The host array pool (backend.array_pool, csrc/bindings/host_pool.cpp): NumPy's handler
inside the block only, reuse of freed buffers, zeroed calloc, arrays that outlive the
block, nesting, the cap, the opt-out, and training results identical with and without."""

import threading

import numpy as np
import pytest

import pymdbn
from pymdbn import MDBN, Conv, ImageAugmenter, Pool, backend

pytestmark = pytest.mark.skipif(backend.host_backend() != "cpu",
                                reason="the pool belongs to the compiled core")

MIB = 1 << 20


def handler_name(a=None):
    try:
        from numpy._core.multiarray import get_handler_name
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import get_handler_name

    return get_handler_name() if a is None else get_handler_name(a)


def stats():
    return backend.get("cpu").pool_stats()


@pytest.fixture(autouse=True)
def pool_on(monkeypatch):
    monkeypatch.delenv(backend.POOL_ENV_VAR, raising=False)


def test_handler_is_installed_in_the_block_only():
    outside = handler_name()
    with backend.array_pool():
        assert handler_name() == "pymdbn_pool"
        a = np.ones(MIB // 8)
        assert handler_name(a) == "pymdbn_pool"
    assert handler_name() == outside
    assert handler_name(np.ones(MIB // 8)) == outside
    assert stats()["active"] == 0


def test_freed_buffers_are_reused_and_calloc_is_zeroed():
    with backend.array_pool():
        a = np.full(MIB, 7.0)  # 8 MiB
        del a
        assert stats()["cached_bytes"] == 8 * MIB
        hits = stats()["hits"]
        b = np.zeros(MIB)  # the dirty block again, zeroed
        assert stats()["hits"] == hits + 1 and stats()["cached_bytes"] == 0
        assert not b.any()
        b[:] = 3.0
        del b
        c = np.empty(MIB // 2)  # another size: a fresh block
        assert stats()["hits"] == hits + 1
        small = np.ones(100)  # below 1 MiB: never kept
        del c, small
        assert stats()["cached_bytes"] == 12 * MIB
    assert stats()["cached_bytes"] == 0


def test_arrays_outlive_the_block():
    with backend.array_pool():
        kept = np.arange(MIB, dtype=np.float64)
        view = kept[::2]
    assert stats()["cached_bytes"] == 0
    np.testing.assert_array_equal(view[:4], [0.0, 2.0, 4.0, 6.0])
    assert kept.sum() == MIB * (MIB - 1) / 2
    grown = np.resize(kept, 2 * MIB)  # realloc-free path; still readable
    assert grown[MIB] == 0.0
    del kept, view, grown  # freed outside the block: straight to the system


def test_nested_blocks_drain_at_the_outermost_exit():
    with backend.array_pool():
        with backend.array_pool():
            del_me = np.ones(MIB)
            del del_me
            assert stats()["active"] == 2
        assert stats()["active"] == 1 and stats()["cached_bytes"] == 8 * MIB
    after = stats()
    assert (after["active"], after["cached_bytes"], after["cached_blocks"]) == (0, 0, 0)


def test_the_cap_bounds_the_cached_bytes():
    cpu = backend.get("cpu")
    cap = stats()["cap_bytes"]
    assert 0 < cap <= 2 << 30
    cpu.pool_set_cap(3 * MIB)
    try:
        with backend.array_pool():
            blocks = [np.ones(MIB // 4) for _ in range(5)]  # 2 MiB each
            del blocks
            assert stats()["cached_bytes"] == 2 * MIB
    finally:
        cpu.pool_set_cap(cap)


def test_opt_out_leaves_numpy_alone_and_show_config_says_so(monkeypatch):
    info = pymdbn.show_config(mode="dicts")
    assert info["array_pool"] is True and "MiB" in info["array_pool_info"]
    monkeypatch.setenv(backend.POOL_ENV_VAR, "0")
    outside = handler_name()
    with backend.array_pool():
        assert handler_name() == outside
    info = pymdbn.show_config(mode="dicts")
    assert info["array_pool"] is False and "PYMDBN_ARRAY_POOL=0" in info["array_pool_info"]


def test_other_threads_keep_their_handler_and_free_pooled_arrays():
    seen = {}
    with backend.array_pool():
        arrays = [np.ones(MIB)]

        def other():
            seen["name"] = handler_name()
            seen["sum"] = float(arrays[0].sum())

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["name"] != "pymdbn_pool" and seen["sum"] == MIB
    t = threading.Thread(target=arrays.clear)  # the last reference dies in that thread
    t.start()
    t.join()


def test_training_and_explaining_do_not_depend_on_the_pool(monkeypatch):
    """Pooled buffers come back dirty: a kernel that read memory it did not write would
    give other results with the pool than with fresh (zeroed) pages."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 32, 32)).astype(np.float32)
    y = (X[:, 8:24, 8:24].mean(axis=(1, 2)) > 0).astype(int)

    def run():
        model = MDBN({"img": [Conv(16, 3), Pool(2), 8]}, pretrain_epochs=2, max_epochs=2,
                     batch_size=32, augment={"img": ImageAugmenter()}, random_state=0)
        model.fit({"img": X}, y)
        ex = model.explain({"img": X}, composite="epsilon_plus", batch_size=32)
        return model.predict_proba({"img": X}), ex.relevance["img"]

    hits = stats()["hits"]
    pooled = run()
    assert stats()["hits"] > hits  # the run did reuse buffers
    monkeypatch.setenv(backend.POOL_ENV_VAR, "0")
    hits = stats()["hits"]
    plain = run()
    assert stats()["hits"] == hits
    for p, q in zip(pooled, plain):
        np.testing.assert_array_equal(p, q)
