"""hf_tcs: teacher-free knowledge distillation with a tailored coordinate system (TCS) on the Hugging Face stack."""

from .config import TCSConfig
from .coordinates import CoordinateSystem, FeatureStatistics
from .features import precompute_teacher_features
from .student import attach_tcs_head, fold_tcs_head
from .teachers import Teacher, load_teacher
from .trainer import TCSDistillationTrainer
from .version import __version__

__all__ = [
    "CoordinateSystem",
    "FeatureStatistics",
    "TCSConfig",
    "TCSDistillationTrainer",
    "Teacher",
    "__version__",
    "attach_tcs_head",
    "fold_tcs_head",
    "load_teacher",
    "precompute_teacher_features",
]
