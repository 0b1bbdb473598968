"""Decoding steps' linear layers on oneDNN-prepacked weights, q/k/v and gate/up fused (issue 13).

A decoding step multiplies a few rows by every weight matrix. On a CPU, PyTorch's bfloat16
``F.linear`` hands oneDNN the weight in its plain layout at every call (the LM head reads at
~11-13 GB/s that way, ~20 GB/s prepacked) and each call pays its own thread wake-up: at 5 rows,
211 calls a step took ~47-53 ms for 269 MB of weights (a plain read of that size runs at
~22 GB/s on the same 2 Xeon cores). With the weights reordered once
(``torch.ops.mkldnn._reorder_linear_weight``, the layout inductor's own weight-packing pass
uses) and the projections that read the same input fused into one matrix (q, k, v; gate, up),
a step takes 151 calls and ~28 ms (~16 ms with OpenMP's default spin-wait).

Outputs stay exactly the plain path's: every fused or packed product is compared once per
(matrix group, row count) with the plain ``F.linear`` products on a random input of that shape
(a kernel is chosen by shape, not by values); a group whose product differs keeps the plain path
for that row count. Used only for inputs of at most ``max_rows`` rows (decoding steps; prefills
keep the plain path), under no-grad, inside ``PackedLinears.active()``: trainers and everything
else see the model as it is. The packed weights are a second copy of the linear weights (~the
model's size), rebuilt when a weight changes in place (a trainer's step, a merged adapter)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # projections of one input, in call order


def _plain_linear(module) -> bool:  # noqa: ANN001
    import torch

    return type(module) is torch.nn.Linear and module.bias is None


def _version(tensor) -> int | None:  # noqa: ANN001
    """In-place updates bump a tensor's version (an inference tensor has none)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def _base(module):  # noqa: ANN001, ANN202
    """The nn.Linear itself, or the base layer a peft LoRA wrapper calls."""
    return module if _plain_linear(module) else getattr(module, "base_layer", None)


class _Group:
    """Linear layers that read the same input, computed as one product with a packed weight."""

    def __init__(self, owner: PackedLinears, linears: list):
        self.owner, self.linears = owner, linears
        self.sizes = [m.out_features for m in linears]
        self.packed = None
        self.key: tuple | None = None
        self.verified: dict[int, bool] = {}  # rows -> the packed product equals the plain ones
        self.stash: tuple | None = None  # (input, outputs) awaiting the group's later members

    def weights_key(self) -> tuple:
        return tuple((m.weight.data_ptr(), _version(m.weight)) for m in self.linears)

    def refresh(self) -> None:
        """(Re)pack when a weight was replaced or changed in place since the last packing."""
        import torch

        key = self.weights_key()
        if key == self.key:
            return
        with torch.no_grad():
            weight = torch.cat([m.weight for m in self.linears]) if len(self.linears) > 1 else self.linears[0].weight
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), self.owner.pack_rows)
        self.key, self.verified, self.stash = key, {}, None

    def plain(self, x):  # noqa: ANN001, ANN202
        import torch.nn.functional as F

        return [F.linear(x, m.weight) for m in self.linears]

    def product(self, x, rows: int):  # noqa: ANN001, ANN202
        """The group's outputs for ``x`` (packed, or plain where packing would change a bit)."""
        import torch

        ok = self.verified.get(rows)
        if ok is None:
            gen = torch.Generator().manual_seed(rows)  # not the global RNG: seeded sampling stays as it was
            probe = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.dtype)
            packed = torch.ops.mkldnn._linear_pointwise(probe, self.packed, None, "none", [], "")
            ok = self.verified[rows] = torch.equal(packed, torch.cat(self.plain(probe), -1))
        if not ok:
            return self.plain(x)
        y = torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        return list(y.split(self.sizes, -1)) if len(self.linears) > 1 else [y]

    def forward(self, index: int, original, x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        import torch

        rows = x.numel() // x.shape[-1] if x.dim() >= 2 else self.owner.max_rows + 1
        if args or kwargs:
            self.stash = None
            return original(x, *args, **kwargs)
        if (rows > self.owner.max_rows or torch.is_grad_enabled() or not x.is_contiguous()
                or x.dtype != self.linears[0].weight.dtype):
            self.stash = None
            return original(x)
        if index == 0:
            outs = self.product(x, rows)
            self.stash = (x, outs) if len(outs) > 1 else None
            return outs[0]
        stash = self.stash
        if stash is not None and stash[0] is x:  # the same input as the group's first member's
            if index == len(self.linears) - 1:
                self.stash = None
            return stash[1][index]
        return original(x)  # called out of the group's order: the plain product


class PackedLinears:
    """The bias-free linear layers of ``model``, packed for decoding steps (module docstring).
    ``available`` is False where PyTorch has no oneDNN (nothing is changed there)."""

    def __init__(self, model, max_rows: int = 64, pack_rows: int = 16):  # noqa: ANN001
        import torch

        self.max_rows, self.pack_rows = int(max_rows), int(pack_rows)
        self.available = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
        self.groups: list[_Group] = []
        seen: set[int] = set()
        modules = [m for name, m in model.named_modules() if "lora_" not in name]  # (peft's own layers stay)
        for module in modules:
            for names in FUSED:
                parts = [_base(getattr(module, n, None)) for n in names]
                if all(p is not None for p in parts) and len({p.in_features for p in parts}) == 1:
                    self.groups.append(_Group(self, parts))
                    seen.update(id(p) for p in parts)
        for module in modules:
            if _plain_linear(module) and id(module) not in seen:
                self.groups.append(_Group(self, [module]))
                seen.add(id(module))

    def weight_bytes(self) -> int:
        """Bytes of the weights a packing copies (its memory cost)."""
        return sum(m.weight.numel() * m.weight.element_size() for g in self.groups for m in g.linears)

    @contextmanager
    def active(self):
        """Inside this block the packed layers answer decoding steps; outside, the model is as
        it was (the per-instance ``forward`` overrides are removed however the block ends)."""
        if not self.available or not self.groups:
            yield
            return
        patched: list[Any] = []
        try:
            for group in self.groups:
                group.refresh()
                for i, m in enumerate(group.linears):
                    m.forward = self._forward(group, i, m.forward)
                    patched.append(m)
            yield
        finally:
            for m in patched:
                m.__dict__.pop("forward", None)
            for group in self.groups:
                group.stash = None

    @staticmethod
    def _forward(group: _Group, index: int, original):  # noqa: ANN001, ANN205
        def forward(x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            return group.forward(index, original, x, *args, **kwargs)

        return forward
