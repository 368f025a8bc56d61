"""speakernet: Kaldi-style speaker verification in PyTorch.

Importing the package is cheap: submodules (and torch) are imported on use.
"""

__version__ = "0.1.0"
