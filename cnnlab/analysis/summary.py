"""Layer-by-layer summary of any torch module: shapes, parameters, multiply-adds, memory,
receptive fields, and the hyper-parameters that do not fit.

Lectures 003/004, "Summary of Conv Layer": output ``W2 = (W1 - F + 2P)/S + 1``, ``D2 = K``,
parameters ``(F F D1 + 1) K``. Example: 32x32x3 input, 10 5x5 filters, stride 1, pad 2 ->
32x32x10 and 760 parameters.

How it works: the model runs once on a zero image (batch 1, eval mode, no gradients) under a
``TorchFunctionMode`` that sees every torch call, functional ones included (``x + identity``,
``torch.cat``). Each tensor derived from the image carries its receptive field (see
:mod:`cnnlab.analysis.receptive`), so residual and Inception models get the largest field over
all paths; forward hooks on the leaf modules turn the calls into rows. A model built on the
``meta`` device is summarised without allocating memory (useful for 98M-parameter layers).

Example:
    >>> from torch import nn
    >>> s = summary(nn.Conv2d(3, 10, 5, stride=1, padding=2), (3, 32, 32))
    >>> s.rows[0].output_shape, s.total_params
    ((10, 32, 32), 760)
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.analysis.fields import Field
from cnnlab.analysis.kd_fields import chain_fields
from cnnlab.analysis.summary_result import Comparison, Summary
from cnnlab.analysis.tracer import (
    DEPTH,
    FIELD,
    LayerRow,
    Tracer,
    _tensors,
    attach_hooks,
    unrun_modules,
)
from cnnlab.errors import ModelError

__all__ = ["Comparison", "LayerRow", "Summary", "compare", "summary"]


def _run(module: nn.Module, x: torch.Tensor, tracer: Tracer) -> tuple[object, str | None]:
    """One eval-mode forward under the tracer; returns (output, error text)."""
    was_training = module.training
    handles = attach_hooks(module, tracer)
    try:
        module.eval()
        with torch.no_grad(), tracer:
            return module(x), None
    except ModelError as exc:
        return None, str(exc)
    except (RuntimeError, ValueError) as exc:
        return None, f"{tracer.layer_name()}: {str(exc).splitlines()[0]}"
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)


def _parameter_rows(module: nn.Module, rows: list[LayerRow], called: set[nn.Module],
                    warnings: list[str]) -> None:
    """Rows for parameters no layer row holds: submodules that did not run (auxiliary heads,
    active in training only) and parameters owned directly by container modules."""
    unrun = unrun_modules(module, called)
    for name, sub in unrun:
        count = sum(p.numel() for p in sub.parameters())
        rows.append(LayerRow(name, f"{type(sub).__name__} (not run)", params=count))
    if unrun:
        names = ", ".join(name for name, _ in unrun)
        warnings.append(f"{names}: not run on this input in eval mode (e.g. auxiliary heads, "
                        "used in training only); their parameters count in the total, their "
                        "multiply-adds do not")
    held = sum(p.numel() for p in module.parameters()) - sum(r.params for r in rows)
    if held > 0:
        rows.append(LayerRow("(parameters of containers)", "", params=held, output_shape=()))


def summary(module: nn.Module, input_size: tuple[int, ...], *, name: str | None = None
            ) -> Summary:
    """Summarise ``module`` on one ``input_size`` = (C, H, W) image (or a (C, L) sequence,
    a (C, D, H, W) clip or volume: receptive fields per axis, :mod:`.kd_fields`).

    Returns a :class:`Summary`: one :class:`LayerRow` per leaf-module call (a module called
    twice gets two rows, its parameters counted once) and per concatenation, totals, warnings
    (hyper-parameters that do not fit, operations whose multiply-adds cannot be counted,
    receptive fields lost, modules that did not run) and ``error`` when the model stops part
    way (e.g. a layer shrinks the size to zero). A model that rejects the input size before
    any layer runs raises ModelError with its own message.

    Example:
        >>> from cnnlab.models import create
        >>> s = summary(create("lenet5"), (1, 32, 32))
        >>> s.total_params, s.rows[0].output_shape, s.total_units, s.depth
        (61706, (6, 28, 28), 6518, 5)
    """
    if len(input_size) < 1 or any(int(v) < 1 for v in input_size):
        raise ModelError(f"input size {input_size!r}: expected positive (C, H, W)")
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    rows: list[LayerRow] = []
    warnings: list[str] = []
    tracer = Tracer(rows, warnings)
    x = torch.zeros(1, *input_size, device=device, dtype=dtype)
    setattr(x, FIELD, Field.image(tuple(input_size[-2:])) if len(input_size) >= 3
            else Field.image((1, 1)).collapse())
    output, error = _run(module, x, tracer)
    if error is not None and not rows:
        raise ModelError(error)  # nothing ran: a table of zeros would only hide the message
    if len(input_size) in (2, 4):  # sequences (C, L), volumes and clips (C, D, H, W)
        warnings += chain_fields(rows, len(input_size) - 1, tuple(input_size[1:]))
    if any(r.field is None for r in rows if r.output_shape):
        lost = next(r.name for r in rows if r.field is None and r.output_shape)
        warnings.append(f"{lost}: receptive field unknown from here on (an operation changed "
                        "the spatial layout in a way the summary does not follow)")
    if error is None:
        _parameter_rows(module, rows, tracer.called, warnings)
    params = list(module.parameters())
    first = next(iter(_tensors((output,), {})), None)
    out_field = getattr(first, FIELD, None)
    if len(input_size) in (2, 4):
        out_field = next((r.field for r in reversed(rows) if r.output_shape), None)
    return Summary(name or type(module).__name__, tuple(input_size), rows,
                   sum(p.numel() for p in params),
                   sum(p.numel() for p in params if p.requires_grad), warnings, error,
                   out_field, getattr(first, DEPTH, 0))


def compare(a: nn.Module, b: nn.Module, input_size: tuple[int, ...], *,
            names: tuple[str, str] | None = None,
            input_size_b: tuple[int, ...] | None = None) -> Comparison:
    """Summaries of ``a`` and ``b`` on the same input (B on ``input_size_b`` if given; the
    rendered comparison states both sizes), and the ratios of their totals.

    Example (lecture 002: the 1x1 "bottleneck" Inception module "saves approximately 60% of
    computations"; measured with :func:`cnnlab.analysis.lecture_models.inception_module`):
        >>> from cnnlab.analysis.lecture_models import inception_module
        >>> c = compare(inception_module(naive=True), inception_module(naive=False), (256, 28, 28))
        >>> round(1 - c.b.total_macs / c.a.total_macs, 3)
        0.682
    """
    first, second = names or (type(a).__name__, type(b).__name__)
    return Comparison(summary(a, input_size, name=first),
                      summary(b, input_size_b or input_size, name=second))
