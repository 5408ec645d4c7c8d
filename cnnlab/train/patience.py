"""Early stopping (``--patience N``): end the run when the main validation metric has not
improved for N epochs in a row (Prechelt 1998, "Early stopping - but when?"; Keras's
``EarlyStopping``). ``best.safetensors`` still holds the best epoch, which is what is tested.

The counter and the best value so far live in the training state (``state.observers``), which
every checkpoint saves, so an interrupted and resumed run stops at the same epoch as one trained
in one go.
"""

from __future__ import annotations

from cnnlab.train.observers import Observer

KEY = "patience"


class Patience(Observer):
    """Stop after ``patience`` epochs without a strict improvement of ``run.main_metric``."""

    def __init__(self, patience: int, log=print) -> None:
        self.patience, self.log = patience, log

    def on_run_start(self, run) -> None:
        saved = run.state.observers.get(KEY, {})
        if saved.get("waited", 0) >= self.patience:  # resumed after it had already stopped
            run.finish = "early stopping"

    def on_epoch_end(self, run, record: dict) -> None:
        saved = run.state.observers.setdefault(KEY, {"best": None, "waited": 0})
        value = record.get(run.main_metric)
        if value is None:
            return
        if saved["best"] is None or value > saved["best"]:
            saved["best"], saved["waited"] = value, 0
        else:
            saved["waited"] += 1
        if saved["waited"] >= self.patience and record["epoch"] < run.config.epochs:
            run.finish = "early stopping"
            self.log(f"early stopping: {run.main_metric} has not improved on "
                     f"{saved['best']:.4f} for {saved['waited']} epochs (--patience "
                     f"{self.patience}); stopped after epoch {record['epoch']} of "
                     f"{run.config.epochs}")
