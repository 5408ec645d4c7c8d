"""How :func:`cnnlab.analysis.summary.summary` watches a model run: a ``TorchFunctionMode``
that sees every torch call (functional ones included) and forward hooks that turn the calls of
each leaf module into one :class:`LayerRow`.

Each tensor derived from the image carries its receptive field (``_cnnlab_field``, a
:class:`~cnnlab.analysis.fields.Field`) and its depth (``_cnnlab_depth``: layers with weights on
the longest path from the input, the count behind "GoogLeNet: 22 layers").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.analysis.fields import Field, union
from cnnlab.analysis.layer_field import to_receptive_field
from cnnlab.analysis.ops import Op, _window_op, describe, setitem_field
from cnnlab.analysis.window_checks import check_window
from cnnlab.errors import ModelError

FIELD = "_cnnlab_field"  # attribute carrying a tensor's Field (None: receptive field lost)
DEPTH = "_cnnlab_depth"  # attribute carrying a tensor's depth in layers with weights
CONCAT_OPS = frozenset({"cat", "concat", "concatenate", "stack"})


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
    units: int = 0  # output elements of a layer with weights (neurons)
    connections: int = 0  # weighted multiply-adds that exist + biased units
    groups: int | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "kernel": self.kernel,
                "stride": self.stride, "padding": self.padding, "groups": self.groups,
                "output_shape": list(self.output_shape), "units": self.units,
                "params": self.params, "macs": self.macs, "connections": self.connections,
                "activation_bytes": self.activation_bytes,
                "receptive_field": rf_dict(self.field)}


def rf_dict(field: Field | None) -> dict | None:
    return to_receptive_field(field)._asdict() if field is not None else None


class Tracer(TorchFunctionMode):
    """Follows every torch call: receptive fields and depth on tensors, MACs and checks per
    layer."""

    def __init__(self, rows: list[LayerRow], warnings: list[str]) -> None:
        super().__init__()
        self.rows, self.warnings = rows, warnings
        self.stack: list[tuple[str, nn.Module]] = []  # modules being executed, outermost first
        self.leaf: LayerRow | None = None  # row of the leaf module now running
        self.leaf_ops: list[Op] = []
        self.leaf_module: nn.Module | None = None
        self.unknown: set[tuple[str, str]] = set()
        self.called: set[nn.Module] = set()  # leaf modules that ran

    def layer_name(self) -> str:
        return (self.stack[-1][0] or "(model)") if self.stack else "(model)"

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name == "__get__":  # a property such as x.T: name it after the property
            name = getattr(getattr(func, "__self__", None), "__name__", name)
        self._check_before(name, args, kwargs)
        out = func(*args, **kwargs)
        if name == "__setitem__":
            self._assign(args)
            return out
        outputs = [t for t in (out if isinstance(out, (tuple, list)) else (out,))
                   if isinstance(t, torch.Tensor)]
        inputs = [t for t in _tensors(args, kwargs) if hasattr(t, FIELD)]
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
        if not isinstance(x, torch.Tensor) or not hasattr(x, FIELD) or x.dim() < 3:
            return None

        op = _window_op(name, args, kwargs)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        found, error = check_window(self.layer_name(), name, size, op.kernel, op.stride,
                                    op.padding, op.dilation, op.ceil_mode)
        self.warnings.extend(w for w in found if w not in self.warnings)
        if error:
            raise ModelError(error)
        return None

    def _assign(self, args: tuple) -> None:
        """``target[index] = value`` changes what ``target`` depends on."""
        if len(args) < 3 or not isinstance(args[0], torch.Tensor):
            return
        target, index, value = args[0], args[1], args[2]
        old, new = getattr(target, FIELD, None), getattr(value, FIELD, None)
        if not isinstance(value, torch.Tensor) or not hasattr(value, FIELD) or \
                target.dim() < 3 or old is None or new is None:
            return
        setattr(target, FIELD, setitem_field(old, index, new, target.dim()))
        setattr(target, DEPTH, max(getattr(target, DEPTH, 0), getattr(value, DEPTH, 0)))

    def _record(self, op: Op, inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> None:
        fields = [getattr(t, FIELD) for t in inputs]
        new = self._field(op, fields, outputs[0])
        depth = max(getattr(t, DEPTH, 0) for t in inputs) + int(op.weighted)
        for t in outputs:
            setattr(t, FIELD, new)
            setattr(t, DEPTH, depth)
        if op.macs is None and (self.layer_name(), op.name) not in self.unknown:
            self.unknown.add((self.layer_name(), op.name))
            self.warnings.append(f"{self.layer_name()}: cannot count the multiply-adds of torch "
                                 f"operation '{op.name}'; the totals leave it out")
        if self.leaf is not None:
            self.leaf_ops.append(op)
        elif (op.kernel is not None or op.macs or op.macs is None or op.connections
              or op.name in CONCAT_OPS):  # functional, outside leaves
            prefix = f"{self.layer_name()}." if len(self.stack) > 1 else ""
            self.rows.append(LayerRow(
                f"{prefix}{op.name}", f"F.{op.name}", op.kernel, op.stride, op.padding,
                tuple(outputs[0].shape[1:]), 0, op.macs, _bytes(outputs), new,
                outputs[0][0].numel() if op.weighted else 0, op.connections, op.groups))

    def _field(self, op: Op, fields: list, out: torch.Tensor) -> Field | None:
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


def leaves(model: nn.Module) -> dict[nn.Module, str]:
    """Modules that get a row: those without children."""
    return {m: n or type(m).__name__ for n, m in model.named_modules()
            if not list(m.children())}


def module_window(module: nn.Module) -> tuple:
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


def attach_hooks(model: nn.Module, tracer: Tracer) -> list:
    """Forward hooks that open a row when a leaf module starts and close it when it ends."""
    leaf_names, handles = leaves(model), []

    def pre(module: nn.Module, _inputs: tuple) -> None:
        tracer.stack.append((names[module], module))
        if module in leaf_names and tracer.leaf is None:
            name = leaf_names[module]
            calls = sum(1 for r in tracer.rows if r.name.split(" (call")[0] == name)
            params = 0 if module in tracer.called else sum(p.numel() for p in module.parameters())
            tracer.called.add(module)
            kernel, stride, padding = module_window(module)
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
        finish_row(row, tracer.leaf_ops, module, inputs, outs)
        tracer.rows.append(row)
        tracer.leaf = None

    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    for module in names:
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _connections(ops: list[Op], module: nn.Module) -> int:
    """The row's connections; a module whose weight is partly masked (LeNet-5's C3) says how
    many weights exist with ``connected_weights()``, and only those count."""
    total = sum(op.connections for op in ops)
    connected = getattr(module, "connected_weights", None)
    weight = getattr(module, "weight", None)
    if callable(connected) and isinstance(weight, torch.Tensor) and weight.numel():
        dense = sum(op.macs or 0 for op in ops if op.weighted)
        total -= dense - dense * int(connected()) // weight.numel()
    return total


def finish_row(row: LayerRow, ops: list[Op], module: nn.Module, inputs: tuple,
               outs: list[torch.Tensor]) -> None:
    """Totals of a leaf module's calls: MACs, connections, units, window, field."""
    row.macs = None if any(op.macs is None for op in ops) else sum(op.macs for op in ops)
    row.connections = _connections(ops, module)
    groups = [op.groups for op in ops if op.groups is not None]
    row.groups = groups[0] if groups else getattr(module, "groups", None)
    windows = [op for op in ops if op.kernel is not None]
    if row.kernel is None and len(windows) == 1:
        row.kernel, row.stride, row.padding = windows[0].kernel, windows[0].stride, \
            windows[0].padding
    if outs:
        row.output_shape = tuple(outs[0].shape[1:])
        row.units = outs[0][0].numel() if any(op.weighted for op in ops) else 0
        row.activation_bytes = _bytes(outs)
        row.field = getattr(outs[0], FIELD, None)
        x = next((t for t in inputs if isinstance(t, torch.Tensor) and hasattr(t, FIELD)), None)
        if row.field is None and x is not None and getattr(x, FIELD) and row.kernel:
            # a custom windowed layer (e.g. LocallyConnected2d): trust its attributes
            out_hw = (int(outs[0].shape[-2]), int(outs[0].shape[-1]))
            row.field = getattr(x, FIELD).window(row.kernel, row.stride, row.padding, out_hw)
            for t in outs:
                setattr(t, FIELD, row.field)


def unrun_modules(model: nn.Module, called: set[nn.Module]) -> list[tuple[str, nn.Module]]:
    """The largest submodules with parameters none of whose layers ran (e.g. GoogLeNet's
    auxiliary heads in eval mode), in definition order."""
    found: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        parts = [m for m in module.modules() if not list(m.children())]
        if not any(m in called for m in parts):
            if any(True for _ in module.parameters()):
                found.append((name, module))
            return
        for child, sub in module.named_children():
            visit(f"{name}.{child}" if name else child, sub)

    visit("", model)
    return found
