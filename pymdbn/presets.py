"""The systems compared in the MDBN paper, as ready-made estimators.

All presets use the same pathway sizes and fine-tuning budget by default, so that
differences in accuracy come from the fusion and training scheme, not from capacity.
The three multimodal presets also share the hidden units' sparsity target during
pretraining (:data:`SPARSITY`); the early-fusion DBN is pretrained without it, which
on the phantoms it needs (with it, its fine-tuning never leaves loss 0.693):

============================  ===========  =====================  ===============
factory                        fusion       training of the top    sigmoid
============================  ===========  =====================  ===============
:func:`early_fusion_dbn`       input        full fine-tuning       plain
:func:`mdbn`                   concat       softmax, frozen codes  plain
:func:`e_mdbn`                 joint RBM    full fine-tuning       plain
:func:`proposed`               joint RBM    full fine-tuning       clipped (c = 4)
:func:`convolutional`          joint RBM    full fine-tuning       clipped (c = 4)
============================  ===========  =====================  ===============

:func:`convolutional` is the proposed model with convolutional pathways
(:data:`CONV_PATHWAY`), for real scans where lesions move between images.
"""

from pymdbn.layers import Conv, Pool, input_shapes
from pymdbn.models import finetune
from pymdbn.models.dbn import DBN
from pymdbn.models.early_fusion import EarlyFusionDBN
from pymdbn.models.mdbn import DEFAULT_MODALITIES, MDBN

__all__ = ["EarlyFusionDBN", "early_fusion_dbn", "mdbn", "e_mdbn", "proposed",
           "PATHWAY", "PROPOSED_CLIP", "FINE_TUNE", "PRETRAIN_EPOCHS", "SPARSITY",
           "PER_FEATURE", "PER_IMAGE", "convolutional", "CONV_PATHWAY", "CONV_PRETRAIN_EPOCHS",
           "CONV_AUGMENT", "CONV_FINE_TUNE", "conv_pathway"]

#: Default hidden layer sizes of every modality pathway.
PATHWAY = (512, 256)
#: Clip of the proposed model's sigmoid, see :func:`proposed`.
PROPOSED_CLIP = 4.0

#: Fine-tuning defaults shared by every fine-tuned preset (same budget for all).
#: Adam at 1e-3 instead of the estimators' SGD (lr 0.1, momentum 0.9), whose loss
#: oscillated between 1.0 and 2.5 on the binary phantom task; early stopping on a
#: 10% stratified hold-out restores the best weights. Dropout (half the hidden units,
#: a fifth of the input pixels per batch; Hinton et al. 2012 fine-tuned pretrained DBNs
#: this way) because without it the training loss reached 0.002 while the validation
#: loss was lowest after 2 epochs: on 6400 phantom patients resized to 32x32 (seed 0) the
#: proposed model went from 0.932 to 0.948 test accuracy with it (ROC AUC 0.975 to 0.978).
#: On 25600 patients (10 pretraining epochs, seed 0): 0.969 as set, 0.965 without input
#: dropout, 0.968 with a learning rate of 3e-4; ten epochs' patience changed nothing.
FINE_TUNE = dict(optimizer="adam", learning_rate=1e-3, batch_size=32, max_epochs=30,
                 early_stopping=True, n_iter_no_change=5, dropout=0.5, input_dropout=0.2)

#: Pretraining epochs of every RBM, shared by all presets (the estimators default to 10).
#: On 64x64 phantoms (1600 patients, seed 0) longer pretraining gave the fine-tuned
#: models better starting features: proposed model test accuracy 0.780 after 10 epochs,
#: 0.810 after 30 and 0.830 after 50 (the whole demo: 72 s on 2 cores); lower
#: pretraining or fine-tuning learning rates, more weight decay, larger batches and a
#: stronger sparsity pull did not help (0.74-0.79).
PRETRAIN_EPOCHS = 50

#: Sparsity of the hidden units during pretraining, shared by the MDBN presets: the pull of
#: each RBM's mean hidden activation towards 0.1 keeps the upper RBMs (second pathway
#: layers, joint RBM) from saturating always on, which left the proposed model's joint
#: layer constant and passing no gradient (see :class:`~pymdbn.MDBN`, Notes).
SPARSITY = dict(target=0.1, cost=0.1)

#: Every preset z-scores each pixel with its own training mean and standard deviation
#: (:class:`~pymdbn.preprocessing.ModalityScaler` ``per_feature=True``). The bottom
#: RBMs have unit-variance Gaussian visible units, which assume each input is
#: standardised. With one mean/scale per modality the registered anatomy (the mean
#: image) dominates every pixel; on 64x64 phantoms the pretrained first layers then
#: learned the mean image: 74-86% of their pre-activations lay beyond |z| > 4 and a
#: unit's activation varied across patients by a median standard deviation of
#: 0.001-0.007, i.e. a patient-independent code with no gradient through the clip
#: (the proposed model predicted one class, test accuracy 0.500). Per-pixel z-scoring
#: removes the mean image; the same units then vary with a median standard deviation
#: of about 0.4.
PER_FEATURE = True
#: Every preset also normalises each image by its own mean and standard deviation before
#: the per-pixel z-score (:class:`~pymdbn.preprocessing.ModalityScaler` ``per_image=True``),
#: the intensity normalisation per scan that MRI pipelines apply: whole-image gain,
#: bias-field and exposure differences otherwise drown a lesion's local contrast in the
#: dense first layer. Measured on 64x64 phantoms (1600 patients, seed 0, held-out split):
#: the proposed model went from 0.868 to 0.927 accuracy at difficulty 0.2 (ROC AUC 0.945
#: to 0.976; brain-only lesions found 43% -> 83% of the time) and from 0.830 to 0.833 at
#: difficulty 0.5 (AUC 0.901 to 0.922); the e-MDBN from 0.830 to 0.855 at 0.5.
PER_IMAGE = True


def early_fusion_dbn(hidden_layers=PATHWAY, per_feature=PER_FEATURE, per_image=PER_IMAGE,
                     **dbn_params):
    """Early fusion baseline: one DBN on the concatenated raw modalities.

    Parameters
    ----------
    hidden_layers : int or tuple of int, default=(512, 256)
        An int is one layer.
    per_feature : bool, default=:data:`PER_FEATURE`
        Z-score each pixel separately (see :data:`PER_FEATURE`).
    per_image : bool, default=:data:`PER_IMAGE`
        Normalise each image by its own statistics first (see :data:`PER_IMAGE`).
    **dbn_params
        Further :class:`~pymdbn.DBN` parameters (e.g. ``random_state``).

    Returns
    -------
    EarlyFusionDBN
    """
    defaults = {**{finetune.DBN_NAMES.get(k, k): v for k, v in FINE_TUNE.items()},
                "n_iter": PRETRAIN_EPOCHS}
    return EarlyFusionDBN(DBN(hidden_layers=hidden_layers, **{**defaults, **dbn_params}),
                          per_feature=per_feature, per_image=per_image)


def _modalities(modalities, pathway):
    # An int pathway is one layer; MDBN validates the sizes at fit.
    sizes = tuple(pathway) if isinstance(pathway, (tuple, list)) else pathway
    if modalities is None:
        return {m: sizes for m in DEFAULT_MODALITIES}
    if isinstance(modalities, dict):
        return dict(modalities)
    return {m: sizes for m in modalities}


def _pretrain():
    return dict(pretrain_epochs=PRETRAIN_EPOCHS, pretrain_sparsity_target=SPARSITY["target"],
                pretrain_sparsity_cost=SPARSITY["cost"], per_feature=PER_FEATURE,
                per_image=PER_IMAGE)


def mdbn(modalities=None, pathway=PATHWAY, **params):
    """The MDBN baseline: pathway codes concatenated, softmax trained on frozen codes.

    Parameters
    ----------
    modalities : sequence of str, dict or None
        Names (each gets ``pathway``), or a full ``MDBN`` modalities dict; None is
        brain, breast and bone.
    pathway : int or tuple of int, default=(512, 256)
        Hidden layer sizes of every pathway; an int is one layer.
    **params
        Further :class:`~pymdbn.MDBN` parameters.

    Returns
    -------
    MDBN
    """
    return MDBN(_modalities(modalities, pathway),
                **{**FINE_TUNE, **_pretrain(), "fusion": "concat", "fine_tune": False,
                   "clip": None, **params})


def e_mdbn(modalities=None, pathway=PATHWAY, joint_units=(256,), **params):
    """The extended MDBN: a joint RBM on the pathway codes, then full fine-tuning.

    Parameters are those of :func:`mdbn`, plus ``joint_units`` (int or tuple of int; an
    int is one joint layer).

    Returns
    -------
    MDBN
    """
    return MDBN(_modalities(modalities, pathway),
                **{**FINE_TUNE, **_pretrain(), "fusion": "joint", "joint_units": joint_units,
                   "fine_tune": True, "clip": None, **params})


def proposed(modalities=None, pathway=PATHWAY, joint_units=(256,), clip=PROPOSED_CLIP,
             **params):
    """The proposed model: the e-MDBN with a clipped sigmoid, sigma(clip(z, -4, 4)).

    Why clip = 4: sigma(4) = 0.982, so a unit still spans 96% of its range, while
    its probability stays in [0.018, 0.982]. Saturated units (p near 0 or 1) make
    Gibbs chains sticky during contrastive divergence, and unbounded
    pre-activations let a few units dominate the relevance that LRP redistributes
    in proportion to contributions to z. Clipping at 4 bounds both while losing
    little: the sigmoid's slope beyond 4 is already below 0.018, a tenth of its
    value at 0. Smaller clips (e.g. 2, sigma in [0.12, 0.88]) visibly shrink the
    units' range.

    The clip is kept at 4 rather than removed or tuned for accuracy: it is the one
    difference between this model and :func:`e_mdbn` (same pathways, joint RBM and
    fine-tuning budget, :data:`FINE_TUNE`), so the comparison isolates its effect.

    Parameters are those of :func:`e_mdbn`, plus ``clip``.

    Returns
    -------
    MDBN
    """
    return e_mdbn(modalities, pathway, joint_units, clip=clip, **params)


#: Pathway of :func:`convolutional`: three convolutional RBMs (5x5, 5x5, 3x3 filters)
#: with 2x2 max-pooling after each, then one dense layer. Measured on 64x64 real MRI
#: slices (3064, three tumour types, one slice-level 75/25 split, seed 0): two conv blocks
#: ending in 13x13x64 = 10816 features left 88-95% of the dense layer's pre-activations
#: beyond the clip after pretraining (no gradient there) and fine-tuning stalled at a
#: training loss of 0.73; the third block (5x5x64 = 1600 features) trains, 0.935 accuracy.
CONV_PATHWAY = (Conv(32, 5), Pool(2), Conv(64, 5), Pool(2), Conv(64, 3), Pool(2), 256)


def conv_pathway(image_size, dense_units=256):
    """:data:`CONV_PATHWAY` grown for an image side: 3x3 blocks until maps are small.

    The first two blocks (5x5 filters) are those of :data:`CONV_PATHWAY`; blocks of 64
    3x3 filters with 2x2 max-pooling follow while the maps are more than 6 pixels wide
    and at least 6 high and wide, so that square images reach the dense layer with at most
    6x6x64 features (why: see :data:`CONV_PATHWAY`).
    64x64 gives :data:`CONV_PATHWAY` itself, 128x128 one more block (5x5x64 at the top).
    On the real slices of :data:`CONV_PATHWAY` at 128x128 it scored 0.932 (0.935 at 64).

    Parameters
    ----------
    image_size : int or (int, int)
        Image side, or (height, width).
    dense_units : int or tuple of int
        The dense layers above the convolutions.

    Returns
    -------
    tuple
        A pathway for :func:`convolutional` (``pathway=``).
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    layers = [Conv(32, 5), Pool(2), Conv(64, 5), Pool(2)]
    _, top = input_shapes(layers, size)  # a ValueError names a layer that does not fit
    while max(top[:2]) > 6 and min(top[:2]) >= 6:
        layers += [Conv(64, 3), Pool(2)]
        _, top = input_shapes(layers, size)
    dense = (dense_units,) if isinstance(dense_units, int) else tuple(dense_units)
    return tuple(layers) + dense


#: Pretraining epochs of every RBM of :func:`convolutional`.
CONV_PRETRAIN_EPOCHS = 10
#: Fine-tuning of :func:`convolutional`: :data:`FINE_TUNE` without dropout. On the split
#: above, with the third block: no dropout and no augmentation 0.935 (early stopping at
#: epoch 21); dense-unit dropout 0.2 with shifts of 5% and rotations of 5 degrees 0.902
#: after all 30 epochs, still improving. With the presets' dropout (0.5, inputs 0.2) and
#: stronger augmentation the training loss stayed near 0.73.
CONV_FINE_TUNE = {**FINE_TUNE, "dropout": 0.0, "input_dropout": 0.0}
#: The augmentation that ``convolutional(augment=True)`` uses (off by default, see
#: :data:`CONV_FINE_TUNE`).
CONV_AUGMENT = dict(shift=0.05, flip="none", rotation=5.0)


def convolutional(modalities=None, pathway=CONV_PATHWAY, joint_units=(256,),
                  clip=PROPOSED_CLIP, augment=False, **params):
    """The proposed model with convolutional pathways, for real scans.

    Each modality's pathway is :data:`CONV_PATHWAY`: convolutional RBMs (shared filters,
    Lee et al. 2009) learn local features that are the same at every position, where a
    dense first layer has to learn a lesion at every position separately; max-pooling
    makes the code tolerant to small shifts. The rest is :func:`proposed`: a joint RBM,
    clipped sigmoid (c = 4) and full fine-tuning, with :data:`CONV_FINE_TUNE`.

    For images other than 64x64, pass ``pathway=conv_pathway(size)`` (:func:`conv_pathway`:
    more 3x3 blocks for larger images). Parameters are those of :func:`proposed`, plus
    ``augment``: False (the default, see
    :data:`CONV_FINE_TUNE`), True for :data:`CONV_AUGMENT` (random shifts of up to 5% of
    the image and rotations of up to 5 degrees), or an augmenter (``MDBN``'s
    ``augment``). Explain it with ``composite='epsilon_plus'``: on the real slices above
    it put 2.47 times the tumour box's area share of the positive relevance in the box
    (``epsilon`` 2.52) and found the box with its most relevant pixel more often
    (pointing game 0.119 against 0.082; both far from a reliable localisation).

    Returns
    -------
    MDBN
    """
    if augment is True:
        from pymdbn.augment import ImageAugmenter

        augment = ImageAugmenter(**CONV_AUGMENT)
    elif augment is False:
        augment = None
    params = {**CONV_FINE_TUNE, "pretrain_epochs": CONV_PRETRAIN_EPOCHS, "augment": augment,
              **params}
    return e_mdbn(modalities, pathway, joint_units, clip=clip, **params)
