"""DBN and MDBN with convolutional pathways and augmented fine-tuning: specs, errors,
reproducibility and learning on images where the class is a pattern at any position."""

import numpy as np
import pytest

from pymdbn import DBN, MDBN, Conv, ImageAugmenter, Pool, presets
from pymdbn.layers import layer_specs


def moving_pattern(n, size=14, seed=0):
    """Class 1 images hold a bright 3x3 cross at a random position, class 0 a bright
    3x3 square: the class is the shape, wherever it is. Standardised as a whole (the
    bottom RBM's Gaussian units have unit variance)."""
    rng = np.random.default_rng(seed)
    X = 0.3 * rng.standard_normal((n, size, size)).astype(np.float32)
    y = rng.integers(0, 2, n)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.float32)
    square = np.ones((3, 3), np.float32) * 0.6
    for i in range(n):
        r, c = rng.integers(0, size - 3, 2)
        X[i, r:r + 3, c:c + 3] += 2 * (cross if y[i] else square)
    return (X - X.mean()) / X.std(), y


def test_specs_are_checked():
    assert layer_specs("h", [Conv(4, 3), Pool(2), 8], "DBN")[1] == Pool(2)
    assert layer_specs("h", (8, 4), "DBN") == (8, 4)
    with pytest.raises(ValueError, match=r"h\[1\] is Conv\(4, 3\) after a dense layer"):
        layer_specs("h", [8, Conv(4, 3)], "DBN")
    with pytest.raises(ValueError, match="filters must be a positive int"):
        Conv(0, 3)
    with pytest.raises(ValueError, match="mode must be 'max' or 'avg'"):
        Pool(2, "sum")
    X, y = moving_pattern(10, size=6)
    with pytest.raises(ValueError, match=r"a 7x7 filter does not fit a 6x6 input"):
        DBN([Conv(2, 7), 4], n_iter=1).fit(X)
    with pytest.raises(ValueError, match="needs X of shape"):
        DBN([Conv(2, 3), 4], n_iter=1).fit(X.reshape(10, -1))
    with pytest.raises(ValueError, match="set 'filters' as the Conv spec's own argument"):
        DBN([Conv(2, 3), 4], layer_params=[{"filters": 3}, {}], n_iter=1).fit(X)
    with pytest.raises(ValueError, match=r"modalities\['a'\]: layer 2 Conv\(2, 3\)"):
        MDBN({"a": [Conv(2, 3), Pool(2), Conv(2, 3), 4]}, pretrain_epochs=1,
             max_epochs=1).fit({"a": X}, y)


def test_conv_dbn_learns_the_shape_wherever_it_is():
    X, y = moving_pattern(400)
    Xt, yt = moving_pattern(200, seed=1)
    kw = dict(n_iter=10, fine_tune_epochs=10, optimizer="adam", fine_tune_learning_rate=3e-3,
              random_state=0)
    dbn = DBN([Conv(8, 3), Pool(2), 16], **kw).fit(X, y)
    assert dbn.transform(Xt).shape == (200, 16)
    # 0.87 measured; the dense layer above the pool standardises its inputs to pretrain
    # (without that its code collapsed to one point and fine-tuning stayed at chance).
    assert dbn.score(Xt, yt) > 0.8
    assert dbn.rbms_[1].visible == "gaussian"
    flat = DBN([Conv(8, 3), Pool(2), 16], image_shape=(14, 14), **kw).fit(X.reshape(400, -1), y)
    np.testing.assert_array_equal(flat.predict_proba(Xt.reshape(200, -1)),
                                  dbn.predict_proba(Xt))


def test_conv_mdbn_is_reproducible_across_thread_counts():
    import pymdbn

    X, y = moving_pattern(96)
    V = np.random.default_rng(2).standard_normal((96, 5)).astype(np.float32)

    def fit():
        return MDBN({"img": [Conv(4, 3), Pool(2), 8], "v": (6,)}, joint_units=6,
                    pretrain_epochs=2, max_epochs=3, batch_size=16,
                    augment={"img": ImageAugmenter()}, random_state=0).fit(
            {"img": X, "v": V}, y)

    before = pymdbn.get_num_threads()
    try:
        pymdbn.set_num_threads(1)
        one = fit().predict_proba({"img": X, "v": V})
        pymdbn.set_num_threads(3)
        three = fit().predict_proba({"img": X, "v": V})
    finally:
        pymdbn.set_num_threads(before["openmp"])
    np.testing.assert_array_equal(one, three)


def test_augmentation_changes_the_fit_and_is_checked():
    X, y = moving_pattern(64)
    kw = dict(pretrain_epochs=1, max_epochs=2, batch_size=16, random_state=0)
    plain = MDBN({"img": (8,)}, **kw).fit({"img": X}, y)
    aug = MDBN({"img": (8,)}, augment=ImageAugmenter(), **kw).fit({"img": X}, y)
    again = MDBN({"img": (8,)}, augment=ImageAugmenter(), **kw).fit({"img": X}, y)
    P = {"img": X}
    assert not np.array_equal(plain.predict_proba(P), aug.predict_proba(P))
    np.testing.assert_array_equal(aug.predict_proba(P), again.predict_proba(P))
    with pytest.raises(ValueError, match="augment names 'other', which is not an image input"):
        MDBN({"img": (8,)}, augment={"other": ImageAugmenter()}, **kw).fit({"img": X}, y)
    with pytest.raises(ValueError, match="augment needs images"):
        DBN((8,), augment=ImageAugmenter(), n_iter=1, fine_tune_epochs=1).fit(
            X.reshape(64, -1), y)


def test_convolutional_preset_builds_the_documented_model():
    model = presets.convolutional(["brain"])
    assert model.modalities == {"brain": presets.CONV_PATHWAY}
    assert model.clip == presets.PROPOSED_CLIP and model.fusion == "joint"
    assert model.augment is None and model.dropout == 0
    assert isinstance(presets.convolutional(["brain"], augment=True).augment, ImageAugmenter)


@pytest.mark.parametrize("size, blocks, top", [(16, 2, 1), (32, 2, 5), (64, 3, 5), ((64, 100), 3, 5),
                                               (128, 4, 5), (256, 5, 5)])
def test_conv_pathway_grows_with_the_image(size, blocks, top):
    from pymdbn.layers import input_shapes

    pathway = presets.conv_pathway(size)
    assert pathway[:4] == presets.CONV_PATHWAY[:4] and pathway[-1] == 256
    assert sum(isinstance(layer, Conv) for layer in pathway) == blocks
    shape = (size, size) if isinstance(size, int) else size
    assert min(input_shapes(pathway[:-1], shape)[1][:2]) == top
    assert presets.conv_pathway(64) == presets.CONV_PATHWAY
    assert presets.conv_pathway(64, (128, 32))[-2:] == (128, 32)
    with pytest.raises(ValueError, match="layer 2 Conv"):
        presets.conv_pathway(12)


def test_augmenter_is_stored_in_model_files(tmp_path):
    import pymdbn
    from pymdbn import io

    X, y = moving_pattern(40, size=8)
    aug = ImageAugmenter(shift=0.2, flip="vertical", rotation=3.0)
    model = MDBN({"img": [Conv(2, 3), Pool(2), 4]}, joint_units=3, pretrain_epochs=1,
                 max_epochs=1, augment=aug, random_state=0).fit({"img": X}, y)
    model.save(tmp_path / "m.npz")
    loaded = pymdbn.load(tmp_path / "m.npz")
    assert loaded.augment.get_params() == aug.get_params()
    np.testing.assert_array_equal(loaded.predict_proba({"img": X}),
                                  model.predict_proba({"img": X}))
    with pytest.raises(ValueError, match="malformed augmenter in model file"):
        io.decode_params({"augment": {"__augmenter__": {"shift": 5.0}}})
    with pytest.raises(ValueError, match="unknown ImageAugmenter parameters"):
        io.decode_params({"augment": {"__augmenter__": {"zoom": 2.0}}})
    with pytest.raises(ValueError, match="cannot store a function"):
        io.encode_params({"augment": lambda b, s: b})
