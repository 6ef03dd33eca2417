"""kdfair: what knowledge distillation does to class-wise bias and fairness."""

__version__ = "0.1.0"
