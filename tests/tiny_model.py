"""The tiny user model (a `path/to/file.py:factory` source) that the CLI tests write next to their
catalog: three conv+ReLU layers (`--layers 1,3,5`, widths 6, 8, 5) and a 3-class head."""

TINY_MODEL = """
import torch.nn as nn

def build():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 5, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    )
"""
