"""Training and fine-tuning of the three MODA stages on prepared sample folders.

* :mod:`.datasets`: :func:`load_sample`, :class:`MotionWindows` (MODA / FaCo-Net), :class:`RenderFrames` (renderer).
* :mod:`.losses`: KL, multi-task L1, the authors' L2 + velocity, LSGAN, feature matching, VGG19 perceptual.
* :mod:`.loop`: :func:`run_training` (budgets, best-by-validation weights, resume, CSV, progress, DDP).
* :mod:`.moda_trainer`, :mod:`.faco_trainer`, :mod:`.renderer_trainer`: :func:`train_moda`, :func:`train_faco`,
  :func:`train_renderer`, :func:`evaluate_renderer`.
* :mod:`.presets`: network sizes ``full`` / ``small`` / ``tiny``; :mod:`.quickstart`: :func:`run_quickstart`.
* :mod:`.avatar`: :func:`train_avatar` (a talking video -> that person's renderer, a step budget, resumable).
"""
from moda_core.train.avatar import AvatarConfig, AvatarError, AvatarInterrupted, AvatarResult, train_avatar
from moda_core.train.datasets import MotionWindows, RenderFrames, SampleData, load_sample, split_range
from moda_core.train.faco_trainer import FaCoTask, FaCoTrainConfig, train_faco
from moda_core.train.loop import LoopConfig, TrainingTask, TrainResult, run_training
from moda_core.train.losses import PerceptualLoss, VGG19Features, load_vgg19
from moda_core.train.moda_trainer import MODATask, MODATrainConfig, train_moda
from moda_core.train.presets import preset_config
from moda_core.train.quickstart import QuickstartConfig, QuickstartResult, run_quickstart
from moda_core.train.renderer_trainer import (RendererTask, RendererTrainConfig, discriminator_config_for,
                                              evaluate_renderer, train_renderer)

__all__ = [
    "AvatarConfig", "AvatarError", "AvatarInterrupted", "AvatarResult", "train_avatar",
    "MotionWindows", "RenderFrames", "SampleData", "load_sample", "split_range",
    "FaCoTask", "FaCoTrainConfig", "train_faco",
    "LoopConfig", "TrainingTask", "TrainResult", "run_training",
    "PerceptualLoss", "VGG19Features", "load_vgg19",
    "MODATask", "MODATrainConfig", "train_moda",
    "preset_config",
    "QuickstartConfig", "QuickstartResult", "run_quickstart",
    "RendererTask", "RendererTrainConfig", "discriminator_config_for", "evaluate_renderer", "train_renderer",
]
