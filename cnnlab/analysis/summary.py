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

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.analysis.ops import Op, describe
from cnnlab.analysis.receptive import Field, to_receptive_field, union
from cnnlab.analysis.window_checks import check_window
from cnnlab.errors import ModelError

_ATTR = "_cnnlab_field"  # attribute carrying a tensor's Field (None: receptive field lost)


@dataclass
class LayerRow:
    """One layer (leaf module call, or a functional op outside any leaf)."""

    name: str
    type: str
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    output_shape: tuple[int, ...] = ()
    params: int = 0
    macs: int | None = 0  # None: contains an operation that cannot be counted
    activation_bytes: int = 0
    field: Field | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "kernel": self.kernel,
                "stride": self.stride, "padding": self.padding,
                "output_shape": list(self.output_shape), "params": self.params,
                "macs": self.macs, "activation_bytes": self.activation_bytes,
                "receptive_field": _rf_dict(self.field)}


def _rf_dict(field: Field | None) -> dict | None:
    return to_receptive_field(field)._asdict() if field is not None else None


@dataclass
class Summary:
    """Rows, totals and warnings; ``render()`` gives the table, ``to_dict()`` the JSON form."""

    model: str
    input_size: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # set when the model could not run to the end
    output_field: Field | None = None  # receptive field of the model's (first) output

    @property
    def total_macs(self) -> int:
        """Sum of the countable multiply-adds (see ``macs_complete``)."""
        return sum(r.macs or 0 for r in self.rows)

    @property
    def macs_complete(self) -> bool:
        return all(r.macs is not None for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "input_size": list(self.input_size),
                "rows": [r.to_dict() for r in self.rows], "total_params": self.total_params,
                "trainable_params": self.trainable_params, "total_macs": self.total_macs,
                "macs_complete": self.macs_complete, "activation_bytes": self.activation_bytes,
                "warnings": self.warnings, "error": self.error,
                "output_receptive_field": _rf_dict(self.output_field)}

    def render(self) -> str:
        from cnnlab.analysis.render import render_summary

        return render_summary(self)


class _Tracer(TorchFunctionMode):
    """Follows every torch call: receptive fields on tensors, MACs and checks per layer."""

    def __init__(self, rows: list[LayerRow], warnings: list[str]) -> None:
        super().__init__()
        self.rows, self.warnings = rows, warnings
        self.stack: list[tuple[str, nn.Module]] = []  # modules being executed, outermost first
        self.leaf: LayerRow | None = None  # row of the leaf module now running
        self.leaf_ops: list[Op] = []
        self.leaf_module: nn.Module | None = None
        self.unknown: set[tuple[str, str]] = set()

    def layer_name(self) -> str:
        return (self.stack[-1][0] or "(model)") if self.stack else "(model)"

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name == "__get__":  # a property such as x.T: name it after the property
            name = getattr(getattr(func, "__self__", None), "__name__", name)
        self._check_before(name, args, kwargs)
        out = func(*args, **kwargs)
        outputs = [t for t in (out if isinstance(out, (tuple, list)) else (out,))
                   if isinstance(t, torch.Tensor)]
        inputs = [t for t in _tensors(args, kwargs) if hasattr(t, _ATTR)]
        if not outputs or not inputs:
            return out
        op = describe(name, args, kwargs, outputs[0])
        self._record(op, inputs, outputs)
        return out

    def _check_before(self, name: str, args: tuple, kwargs: dict) -> None:
        """Hyper-parameter checks of sliding windows, before torch raises on a bad size."""
        if name not in ("conv2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
            return None
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or not hasattr(x, _ATTR) or x.dim() < 3:
            return None
        from cnnlab.analysis.ops import _window_op

        op = _window_op(name, args, kwargs)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        found, error = check_window(self.layer_name(), name, size, op.kernel, op.stride,
                                    op.padding, op.dilation, op.ceil_mode)
        self.warnings.extend(w for w in found if w not in self.warnings)
        if error:
            raise ModelError(error)
        return None

    def _record(self, op: Op, inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> None:
        fields = [getattr(t, _ATTR) for t in inputs]
        new = self._field(op, fields, inputs[0], outputs[0])
        for t in outputs:
            setattr(t, _ATTR, new)
        if op.macs is None and (self.layer_name(), op.name) not in self.unknown:
            self.unknown.add((self.layer_name(), op.name))
            self.warnings.append(f"{self.layer_name()}: cannot count the multiply-adds of torch "
                                 f"operation '{op.name}'; the totals leave it out")
        if self.leaf is not None:
            self.leaf_ops.append(op)
        elif op.kernel is not None or op.macs or op.macs is None:  # functional, outside leaves
            prefix = f"{self.layer_name()}." if len(self.stack) > 1 else ""
            row = LayerRow(f"{prefix}{op.name}", f"F.{op.name}", op.kernel, op.stride,
                           op.padding, tuple(outputs[0].shape[1:]), 0, op.macs,
                           _bytes(outputs), new)
            self.rows.append(row)

    def _field(self, op: Op, fields: list, x: torch.Tensor, out: torch.Tensor) -> Field | None:
        if any(f is None for f in fields):
            return None
        merged = union(fields)
        if merged is None:
            return None
        if op.transform is not None:
            return op.transform(merged)
        if out.dim() < 3:  # flatten, a linear layer, a reduction: every position is mixed
            return merged.collapse()
        out_hw = (int(out.shape[-2]), int(out.shape[-1]))
        same = merged.broadcast(out_hw)  # element-wise, channel mixing, concatenation
        if same is not None:
            return same
        if out_hw == (1, 1):  # e.g. x.mean((2, 3), keepdim=True)
            return merged.collapse()
        return None


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _bytes(outputs: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in outputs)


def _leaves(model: nn.Module) -> dict[nn.Module, str]:
    """Modules that get a row: those without children."""
    return {m: n or type(m).__name__ for n, m in model.named_modules()
            if not list(m.children())}


def _module_window(module: nn.Module) -> tuple:
    """(kernel, stride, padding) from a module's attributes, when it has them."""
    def pair(v: object) -> tuple[int, int] | None:
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(i, int) for i in v):
            return v  # type: ignore[return-value]
        if isinstance(v, tuple) and len(v) == 4:  # (left, right, top, bottom)
            return (v[2], v[0])
        return None
    kernel = pair(getattr(module, "kernel_size", None))
    if kernel is None:
        return None, None, None
    stride = pair(getattr(module, "stride", None)) or kernel
    return kernel, stride, pair(getattr(module, "padding", 0)) or (0, 0)


def _attach_hooks(model: nn.Module, tracer: _Tracer) -> list:
    leaves, seen, handles = _leaves(model), set(), []

    def pre(module: nn.Module, _inputs: tuple) -> None:
        tracer.stack.append((names[module], module))
        if module in leaves and tracer.leaf is None:
            name = leaves[module]
            calls = sum(1 for r in tracer.rows if r.name.split(" (call")[0] == name)
            params = 0 if module in seen else sum(p.numel() for p in module.parameters())
            seen.add(module)
            kernel, stride, padding = _module_window(module)
            tracer.leaf = LayerRow(name + (f" (call {calls + 1})" if calls else ""),
                                   type(module).__name__, kernel, stride, padding, params=params)
            tracer.leaf_ops, tracer.leaf_module = [], module

    def post(module: nn.Module, inputs: tuple, output: object) -> None:
        tracer.stack.pop()
        row = tracer.leaf
        if row is None or tracer.leaf_module is not module:
            return
        outs = [t for t in (output if isinstance(output, (tuple, list)) else (output,))
                if isinstance(t, torch.Tensor)]
        _finish_row(row, tracer.leaf_ops, module, inputs, outs)
        tracer.rows.append(row)
        tracer.leaf = None

    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    for module in names:
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _finish_row(row: LayerRow, ops: list[Op], module: nn.Module, inputs: tuple,
                outs: list[torch.Tensor]) -> None:
    row.macs = None if any(op.macs is None for op in ops) else sum(op.macs for op in ops)
    windows = [op for op in ops if op.kernel is not None]
    if row.kernel is None and len(windows) == 1:
        row.kernel, row.stride, row.padding = windows[0].kernel, windows[0].stride, \
            windows[0].padding
    if outs:
        row.output_shape = tuple(outs[0].shape[1:])
        row.activation_bytes = _bytes(outs)
        row.field = getattr(outs[0], _ATTR, None)
        x = next((t for t in inputs if isinstance(t, torch.Tensor) and hasattr(t, _ATTR)), None)
        if row.field is None and x is not None and getattr(x, _ATTR) and row.kernel:
            # a custom windowed layer (e.g. LocallyConnected2d): trust its attributes
            out_hw = (int(outs[0].shape[-2]), int(outs[0].shape[-1]))
            row.field = getattr(x, _ATTR).window(row.kernel, row.stride, row.padding, out_hw)
            for t in outs:
                setattr(t, _ATTR, row.field)


def summary(module: nn.Module, input_size: tuple[int, ...], *, name: str | None = None
            ) -> Summary:
    """Summarise ``module`` on one ``input_size`` = (C, H, W) image.

    Returns a :class:`Summary`: one :class:`LayerRow` per leaf-module call (a module called
    twice gets two rows, its parameters counted once), totals, warnings (hyper-parameters that
    do not fit, operations whose multiply-adds cannot be counted, receptive fields lost) and
    ``error`` when the model cannot run on that size (e.g. a layer shrinks it to zero).

    Example:
        >>> from cnnlab.models import create
        >>> s = summary(create("lenet5"), (1, 32, 32))
        >>> s.total_params, s.rows[0].output_shape
        (61706, (6, 28, 28))
    """
    if len(input_size) < 1 or any(int(v) < 1 for v in input_size):
        raise ModelError(f"input size {input_size!r}: expected positive (C, H, W)")
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    rows: list[LayerRow] = []
    warnings: list[str] = []
    tracer = _Tracer(rows, warnings)
    x = torch.zeros(1, *input_size, device=device, dtype=dtype)
    setattr(x, _ATTR, Field.image(tuple(input_size[-2:])) if len(input_size) >= 3
            else Field.image((1, 1)).collapse())
    was_training = module.training
    handles = _attach_hooks(module, tracer)
    error, output = None, None
    try:
        module.eval()
        with torch.no_grad(), tracer:
            output = module(x)
    except ModelError as exc:
        error = str(exc)
    except (RuntimeError, ValueError) as exc:
        error = f"{tracer.layer_name()}: {str(exc).splitlines()[0]}"
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    if any(r.field is None for r in rows if r.output_shape):
        lost = next(r.name for r in rows if r.field is None and r.output_shape)
        warnings.append(f"{lost}: receptive field unknown from here on (an operation changed "
                        "the spatial layout in a way the summary does not follow)")
    params = list(module.parameters())
    held = sum(p.numel() for p in params) - sum(r.params for r in rows)
    if held > 0 and error is None:  # parameters owned directly by container modules
        rows.append(LayerRow("(parameters of containers)", "", params=held, output_shape=()))
    first = next(iter(_tensors((output,), {})), None)
    return Summary(name or type(module).__name__, tuple(input_size), rows,
                   sum(p.numel() for p in params),
                   sum(p.numel() for p in params if p.requires_grad), warnings, error,
                   getattr(first, _ATTR, None))


@dataclass
class Comparison:
    """Two summaries on the same input, side by side (``render()``, ``to_dict()``)."""

    a: Summary
    b: Summary

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(),
                "params_ratio": self.b.total_params / max(self.a.total_params, 1),
                "macs_ratio": self.b.total_macs / max(self.a.total_macs, 1)}

    def render(self) -> str:
        from cnnlab.analysis.render import render_comparison

        return render_comparison(self)


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
