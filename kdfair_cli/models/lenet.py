"""LeNet-5 (LeCun et al. 1998) adapted to colour input of any size.

Two 5x5 convolutions (6 and 16 channels) with ReLU and 2x2 max pooling, then 120-84-C fully
connected layers. The first linear layer's width follows the input size, so 32x32 RGB gives the
classic 16*5*5 = 400 features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        channels, height, width = input_shape
        if min(height, width) < 12:
            raise ValueError(f"LeNet-5 needs inputs of at least 12x12 pixels, got {height}x{width}")
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        feat_h = ((height - 4) // 2 - 4) // 2
        feat_w = ((width - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * feat_h * feat_w, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
