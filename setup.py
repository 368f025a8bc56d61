"""Installs the speakernet package.

torch is deliberately given as a range here: ``tools/install.sh`` installs the pinned
default CPU build first (``TORCH_VERSION`` overrides it), so pip never pulls a multi-GB
CUDA wheel behind the user's back.
"""

from setuptools import find_packages, setup

setup(
    name="speakernet",
    version="0.1.0",
    description="Kaldi-style speaker-verification recipes and toolkit in PyTorch",
    packages=find_packages(include=["speakernet", "speakernet.*"]),
    python_requires=">=3.11",
    install_requires=[
        "torch>=2.1",
        "numpy>=1.22",
        "scipy>=1.8",
        "kaldiio>=2.17",
        "kaldi-native-fbank>=1.18",
        "soundfile>=0.12",
        "pyyaml>=6.0",
        "scikit-learn>=1.1",
        "threadpoolctl>=3.1",
        "matplotlib>=3.5",
        "tqdm>=4.60",
    ],
    extras_require={
        # ONNX export (torch's torch.export-based exporter needs onnx and onnxscript) and inference
        "export": ["onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18"],
        # simulated room impulse responses (speakernet.data.augment.simulate, bin/simulate_rirs)
        "augment": ["pyroomacoustics>=0.7"],
        "test": ["pytest>=7", "pytest-xdist>=3.5", "ruff>=0.4", "hypothesis>=6.100",
                 "onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18", "pyroomacoustics>=0.7"],
    },
    entry_points={"console_scripts": ["speakernet=speakernet.bin.cli:main"]},
)
