"""hf_tcs: teacher-free knowledge distillation with a tailored coordinate system (TCS) on the Hugging Face stack."""

__version__ = "0.1.0.dev0"

from .features import precompute_teacher_features  # noqa: E402
from .teachers import Teacher, load_teacher  # noqa: E402

__all__ = ["Teacher", "__version__", "load_teacher", "precompute_teacher_features"]
