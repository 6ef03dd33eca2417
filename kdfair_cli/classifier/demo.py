"""The built-in demo: a small Trifeature sweep (ResNet-20 -> LeNet-5) that runs on a laptop CPU."""

from __future__ import annotations

from kdfair_cli.train.device import resolve_device

DEMO_SPEC = """\
# kdfair demo: Trifeature, ResNet-20 teacher -> LeNet-5 student, 2 seeds, 4 temperatures.
# Sized to finish in under 10 minutes on a 2-core CPU; raise epochs/seeds for real numbers.

[sweep]
name = "kdfair demo: Trifeature, ResNet-20 -> LeNet-5"
seeds = [0, 1]
temperatures = [1, 2, 5, 10]
alpha = 0.8
t2_scaling = true
device = "{device}"

[data]
dataset = "trifeature"
path = "data/trifeature"
[data.generate]
image_size = 32
train_per_combination = {train_per_combination}
val_per_combination = 1
test_per_combination = 10
seed = 0

[train]
batch_size = 128
optimizer = "sgd"
lr = 0.05
schedule = "cosine"
augment = false

[teacher]
arch = "resnet20"
epochs = {teacher_epochs}

[nds]
arch = "lenet5"
epochs = {student_epochs}
lr = 0.05

[analyses]
split = "test"
group_attributes = ["color", "texture"]
pairs = "twins"
pairs_attribute = "color"
compare_classes = true
"""


def demo_spec(*, device: str = "auto", quick: bool = False) -> str:
    """The demo spec for `device` (checked here, before the demo writes anything)."""
    resolve_device(device)
    if quick:
        return DEMO_SPEC.format(device=device, train_per_combination=1, teacher_epochs=1, student_epochs=1)
    return DEMO_SPEC.format(device=device, train_per_combination=5, teacher_epochs=8, student_epochs=6)
