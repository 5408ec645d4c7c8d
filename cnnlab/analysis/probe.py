"""Layer-wise linear probes: how discriminative is each layer's representation?

Lecture 001, "Which layer?", Table 6 (Zeiler & Fergus 2014): a linear SVM or softmax regression
trained on the features of each layer of a trained convnet, "higher layers generally produce more
discriminative features". Features are each layer's output average-pooled to ``pool x pool``
positions (``features.collect_features``), standardised, then fitted with scikit-learn's
``LinearSVC`` or ``LogisticRegression``. With ``per_class`` and ``repeats`` each repeat draws
that many training images per class (as the table's "30/class") and the table gives
mean +- standard deviation over repeats.

Example:
    >>> rows = probe_run("runs/lenet5-digits", classifiers=("svm",))  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cnnlab.analysis.features import (
    collect_features,
    load_run_data,
    pyplot,
    resolve_layers,
    save_plot,
    write_csv,
)
from cnnlab.choices import PROBE_CLASSIFIERS
from cnnlab.errors import ConfigError, choices_hint
from cnnlab.progress import track

CLASSIFIERS = PROBE_CLASSIFIERS


def make_probe(kind: str, seed: int = 0):
    """An unfitted scikit-learn pipeline: standardise, then a linear SVM or softmax regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in CLASSIFIERS:
        raise ConfigError(f"unknown probe classifier {choices_hint(kind, list(CLASSIFIERS))}")
    if kind == "svm":
        head = LinearSVC(C=1.0, max_iter=5000, random_state=seed)
    else:
        head = LogisticRegression(C=1.0, max_iter=2000)
    return make_pipeline(StandardScaler(), head)


def sample_per_class(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Indices of up to ``per_class`` random samples of every class (all when None)."""
    if per_class is None:
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(picked).sort().values


def probe_accuracy(kind: str, train_x: torch.Tensor, train_y: torch.Tensor,
                   test_x: torch.Tensor, test_y: torch.Tensor, *, seed: int = 0) -> float:
    """Test accuracy of a linear probe fitted on ``(N, D)`` training features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    probe = make_probe(kind, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_x.numpy(), train_y.numpy())
    return float((probe.predict(test_x.numpy()) == test_y.numpy()).mean())


def probe_features(train: dict[str, torch.Tensor], train_y: torch.Tensor,
                   test: dict[str, torch.Tensor], test_y: torch.Tensor, *,
                   classifiers: Sequence[str] = ("svm", "softmax"), per_class: int | None = None,
                   repeats: int = 1, seed: int = 0) -> list[dict]:
    """One row per (classifier, layer): ``acc_mean``, ``acc_std`` over ``repeats`` draws."""
    rows = []
    pairs = [(kind, index, layer) for kind in classifiers for index, layer in enumerate(train)]
    for kind, index, layer in track(pairs, "probe: fitting classifiers", unit="probe"):
        accs = []
        for repeat in range(repeats):
            pick = sample_per_class(train_y, per_class, seed + repeat)
            accs.append(probe_accuracy(kind, train[layer][pick], train_y[pick], test[layer],
                                       test_y, seed=seed + repeat))
        rows.append({"classifier": kind, "layer_index": index + 1, "layer": layer,
                     "dim": train[layer].shape[1], "acc_mean": float(np.mean(accs)),
                     "acc_std": float(np.std(accs)), "repeats": repeats})
    return rows


def format_table(rows: list[dict]) -> str:
    """Table 6's layout: ``SVM (1) features.0   44.8 +- 0.7`` (accuracy in %)."""
    lines = [f"{'probe (layer)':<34} {'dim':>6}  accuracy %"]
    for r in rows:
        name = f"{CLASSIFIERS[r['classifier']]} ({r['layer_index']}) {r['layer']}"
        lines.append(f"{name:<34} {r['dim']:>6}  {100 * r['acc_mean']:5.1f} +- "
                     f"{100 * r['acc_std']:.1f}")
    return "\n".join(lines)


def depth_verdicts(rows: list[dict]) -> list[str]:
    """Per classifier, whether the deepest probed layer beats the first (Table 6's claim):
    ``accuracy rises with depth (SVM): yes (72.2% -> 97.5%; up at 4 of 4 steps)``."""
    lines = []
    for kind in dict.fromkeys(r["classifier"] for r in rows):
        accs = [r["acc_mean"] for r in rows if r["classifier"] == kind]
        if len(accs) < 2:
            lines.append(f"accuracy rises with depth ({CLASSIFIERS[kind]}): n/a (one layer)")
            continue
        ups = sum(b > a for a, b in zip(accs, accs[1:], strict=False))
        verdict = "yes" if accs[-1] > accs[0] else "no"
        lines.append(f"accuracy rises with depth ({CLASSIFIERS[kind]}): {verdict} "
                     f"({100 * accs[0]:.1f}% -> {100 * accs[-1]:.1f}%; up at {ups} of "
                     f"{len(accs) - 1} steps)")
    return lines


def plot_probes(rows: list[dict], path: str | Path) -> Path:
    """Probe accuracy against layer depth, one line per classifier."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in dict.fromkeys(r["classifier"] for r in rows):
        mine = [r for r in rows if r["classifier"] == kind]
        ax.errorbar([r["layer_index"] for r in mine], [100 * r["acc_mean"] for r in mine],
                    yerr=[100 * r["acc_std"] for r in mine], marker="o", capsize=3,
                    label=CLASSIFIERS[kind])
    first = [r for r in rows if r["classifier"] == rows[0]["classifier"]]
    ax.set_xticks([r["layer_index"] for r in first], [r["layer"] for r in first], rotation=30,
                  fontsize=8)
    return save_plot(fig, ax, path, title="linear probe per layer (lecture 001, Table 6)",
                       ylabel="test accuracy (%)")


def probe_run(run: str | Path, *, layers: str | list[str] | None = "all", data=None,
              classifiers: Sequence[str] = ("svm", "softmax"), pool: int | None = 2,
              per_class: int | None = None, repeats: int = 1, limit: int | None = 5000,
              out: str | Path | None = None, seed: int = 0) -> list[dict]:
    """Probe every layer of ``run``'s best model on ``data`` (default: its own data set).

    Training features come from the train split (at most ``limit`` images), test features from
    the test split. With ``out``, writes ``probe.csv`` and ``probe.png`` there.
    """
    for kind in classifiers:
        make_probe(kind)  # validate before the expensive part
    for flag, value in (("--per-class", per_class), ("--repeats", repeats), ("--limit", limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    train = load_run_data(run, data=data, split="train", limit=limit, seed=seed)
    test = load_run_data(run, data=data, split="test", limit=limit, seed=seed)
    names = resolve_layers(train.model, layers)
    train_x = collect_features(train.model, train.inputs(), names, pool=pool)
    test_x = collect_features(train.model, test.inputs(), names, pool=pool)
    rows = probe_features(train_x, train.labels, test_x, test.labels, classifiers=classifiers,
                          per_class=per_class, repeats=repeats, seed=seed)
    if out is not None:
        write_csv(rows, Path(out) / "probe.csv")
        plot_probes(rows, Path(out) / "probe.png")
    return rows
