"""hf_tcs: teacher-free knowledge distillation with a tailored coordinate system (TCS) on the Hugging Face stack."""

__version__ = "0.1.0.dev0"

from .config import TCSConfig  # noqa: E402
from .coordinates import CoordinateSystem, FeatureStatistics  # noqa: E402
from .features import precompute_teacher_features  # noqa: E402
from .student import attach_tcs_head, fold_tcs_head  # noqa: E402
from .teachers import Teacher, load_teacher  # noqa: E402
from .trainer import TCSDistillationTrainer  # noqa: E402

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
