"""The estimators: RBM, DBN, MDBN and the early-fusion DBN, and the network they share.

``rbm``, ``dbn``, ``mdbn`` and ``early_fusion`` hold the estimators; ``network`` the
forward pass (:func:`~pymdbn.models.network.propagate`, :class:`~pymdbn.models.network.
Network`) that every model, the fine-tuning and the LRP engine run; ``finetune`` the
supervised training loop. Importing this package defines every estimator, which fills
the model-file registry of :mod:`pymdbn.io`.
"""

from pymdbn.models.dbn import DBN
from pymdbn.models.early_fusion import EarlyFusionDBN
from pymdbn.models.mdbn import MDBN
from pymdbn.models.rbm import RBM, log_partition_exact

__all__ = ["RBM", "DBN", "MDBN", "EarlyFusionDBN", "log_partition_exact"]
