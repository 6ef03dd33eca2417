"""Progress: a rich bar on a terminal, one plain line per epoch otherwise (SLURM logs)."""

from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdfair_cli.console import console


class EpochReporter:
    """Reports batches within an epoch and a summary line after each epoch."""

    def __init__(self, name: str, epochs: int, steps_per_epoch: int, enabled: bool = True) -> None:
        self.name = name
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.t0 = time.perf_counter()

    def __enter__(self) -> EpochReporter:
        if self.live:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                     console=console, transient=False)
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"{self.name} epoch {epoch + 1}/{self.epochs}",
                                               total=self.steps, stats="")

    def batch(self, loss: float, acc: float) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=1, stats=f"loss {loss:.4f} acc {acc:.3f}")

    def end_epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        parts = [f"{self.name} epoch {record['epoch'] + 1}/{self.epochs}",
                 f"loss {record['train_loss']:.4f}", f"acc {record['train_acc']:.4f}"]
        if record.get("val_acc") is not None:
            parts.append(f"val_acc {record['val_acc']:.4f}")
        parts.append(f"lr {record['lr']:.4g}")
        parts.append(f"{record['seconds']:.1f}s")
        line = "  ".join(parts)
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)
