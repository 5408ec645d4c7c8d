"""A plain-PyTorch reference of airbench94_muon's procedure (Jordan 2024) on our data, beside
cnnlab's recipe: is a CIFAR-10 shortfall in cnnlab or in the data?

    python bench/airbench_reference.py                          # 64/256/256, 8 epochs (~17 min)
    python bench/airbench_reference.py --widths 48,192,192 --epochs 7 --cnnlab   # + cnnlab.fit
    python bench/airbench_reference.py --quick                  # plumbing: 5,000 images, 1 epoch

The reference is written from the paper's procedure, not with cnnlab: batch 2,000, summed
label-smoothed (0.2) loss, a whitening conv from the uncentred second moment of 2x2 patches
with a bias trained for the first 3 epochs only, BatchNorm (eps 1e-12, weight fixed) with bias
lr 0.053, head lr 0.67 on a unit-std head whose scores are divided by the width, decay 2e-6
per example, Muon (lr 0.24, momentum 0.6, Nesterov, 3 Newton-Schulz steps, filters kept at norm
sqrt(out)) on the 3x3 filters, lr linear to 0 from the first step, alternating flip +
2-pixel mirror-padded translation, 6-view flip-and-translate test-time augmentation. It runs in
bf16 autocast with channels_last in this one process. With ``--cnnlab`` the same run also
trains ``cnnlab.fit`` with recipe ``cifar10-90``'s settings at the same widths and epochs (one
process), so the two accuracies and times compare side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import recipes  # noqa: E402

from cnnlab.data.datasets import load_dataset  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.train.fit import fit  # noqa: E402

BATCH = 2000
HEAD_LR, BIAS_LR, DECAY_PER_EXAMPLE = 0.67, 0.053, 2e-6
MUON_LR, MUON_MOMENTUM, SGD_MOMENTUM = 0.24, 0.6, 0.85
WHITEN_BIAS_EPOCHS = 3


def normalised(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> float, per-channel standardised with the training statistics."""
    return (images.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def newton_schulz(g: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """Approximate ``U V^T`` of a 2-D ``g`` (the quintic iteration, in bf16)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    x = x / (x.norm() + 1e-7)
    tall = g.shape[0] > g.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).float()


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:cin])
    return conv


def batchnorm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(cin, cout), nn.MaxPool2d(2), batchnorm(cout), nn.GELU(),
                         conv3x3(cout, cout), batchnorm(cout), nn.GELU())


class ReferenceNet(nn.Module):
    """Whitening 2x2 conv (24 filters, bias) -> GELU -> 3 blocks -> global max -> head / width."""

    def __init__(self, widths: tuple[int, int, int]) -> None:
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.body = nn.Sequential(nn.GELU(), block(24, widths[0]), block(widths[0], widths[1]),
                                  block(widths[1], widths[2]), nn.AdaptiveMaxPool2d(1))
        self.head = nn.Linear(widths[2], 10, bias=False)
        with torch.no_grad():
            self.head.weight /= self.head.weight.std()

    def fit_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Filters = eigenvectors of the patches' second moment / sqrt(eigenvalue + eps), +-."""
        patches = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5)
        rows = patches.reshape(-1, 12).double()
        values, vectors = torch.linalg.eigh(rows.T @ rows / len(rows))
        filters = (vectors.T / torch.sqrt(values + eps)[:, None]).reshape(12, 3, 2, 2)
        with torch.no_grad():
            self.whiten.weight.copy_(torch.cat([filters, -filters]).float())

    def forward(self, x: torch.Tensor, whiten_bias_grad: bool = True) -> torch.Tensor:
        bias = self.whiten.bias if whiten_bias_grad else self.whiten.bias.detach()
        x = self.body(F.conv2d(x, self.whiten.weight, bias)).flatten(1)
        return self.head(x) / x.shape[1]


def translate(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Mirror-pad by ``pad`` and crop each image back at a random offset."""
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=gen)
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            pick = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            out[pick] = padded[pick, :, dy:dy + h, dx:dx + w]
    return out


@torch.inference_mode()
def tta_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Test accuracy of one view and of the 6 flip x translate views."""
    net.eval()

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * net(v).float() + 0.5 * net(v.flip(-1)).float()

    plain, tta = [], []
    for part in x.split(1000):
        part = part.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain.append(net(part).float())
            padded = F.pad(part, (1, 1, 1, 1), mode="reflect")
            tta.append(0.5 * mirrored(part) + 0.25 * mirrored(padded[..., :-2, :-2])
                       + 0.25 * mirrored(padded[..., 2:, 2:]))
    return tuple((torch.cat(s).argmax(1) == y).float().mean().item() for s in (plain, tta))


def train_reference(widths: tuple[int, int, int], epochs: int, seed: int, x: torch.Tensor,
                    y: torch.Tensor) -> ReferenceNet:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ReferenceNet(widths)
    net.fit_whitening(x[torch.randperm(len(x), generator=gen)[:5000]])
    net = net.to(memory_format=torch.channels_last)
    decay = DECAY_PER_EXAMPLE * BATCH
    norm_biases = [p for n, p in net.body.named_parameters() if p.dim() == 1 and p.requires_grad]
    sgd = torch.optim.SGD([
        dict(params=[net.whiten.bias], lr=BIAS_LR, weight_decay=decay / BIAS_LR),
        dict(params=norm_biases, lr=BIAS_LR, weight_decay=decay / BIAS_LR),
        dict(params=[net.head.weight], lr=HEAD_LR, weight_decay=decay / HEAD_LR)],
        momentum=SGD_MOMENTUM, nesterov=True)
    initial = [g["lr"] for g in sgd.param_groups]
    filters = [p for p in net.parameters() if p.dim() == 4 and p.requires_grad]
    momenta = [torch.zeros_like(p) for p in filters]
    per_epoch = len(x) // BATCH
    total, bias_steps = epochs * per_epoch, WHITEN_BIAS_EPOCHS * per_epoch
    flipped = torch.rand(len(x), generator=gen) < 0.5  # epoch 0's flips; then all alternate
    step = 0
    for epoch in range(epochs):
        net.train()
        started, order = time.perf_counter(), torch.randperm(len(x), generator=gen)
        for i in range(per_epoch):
            idx = order[i * BATCH:(i + 1) * BATCH]
            flip = (flipped[idx] ^ bool(epoch % 2)).view(-1, 1, 1, 1)
            batch = translate(torch.where(flip, x[idx].flip(-1), x[idx]), gen)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = net(batch.contiguous(memory_format=torch.channels_last),
                             whiten_bias_grad=step < bias_steps)
            loss = F.cross_entropy(logits.float(), y[idx], label_smoothing=0.2, reduction="sum")
            loss.backward()
            sgd.param_groups[0]["lr"] = initial[0] * max(0.0, 1 - step / bias_steps)
            for group, lr in zip(sgd.param_groups[1:], initial[1:], strict=True):
                group["lr"] = lr * (1 - step / total)
            sgd.step()
            with torch.no_grad():
                for p, m in zip(filters, momenta, strict=True):
                    m.mul_(MUON_MOMENTUM).add_(p.grad)
                    direction = p.grad.add(m, alpha=MUON_MOMENTUM)
                    p.mul_(len(p) ** 0.5 / p.norm())
                    update = newton_schulz(direction.reshape(len(p), -1)).view_as(p)
                    p.add_(update, alpha=-MUON_LR * (1 - step / total))
            net.zero_grad(set_to_none=True)
            step += 1
        print(f"reference epoch {epoch + 1}/{epochs}: last-batch train acc "
              f"{(logits.argmax(1) == y[idx]).float().mean().item():.4f}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return net


def run_cnnlab(widths: tuple[int, int, int], epochs: int, seed: int, root: str | None,
               quick: bool) -> float:
    """Recipe cifar10-90's settings at these widths and epochs, one process; test accuracy
    (``quick``: the recipes' plumbing check on digits)."""
    recipe = recipes.RECIPES["cifar10-90"]
    options = {**recipe.config, "model_options": {"widths": list(widths)}, "epochs": epochs}
    recipe = dataclasses.replace(recipe, config=options)
    with tempfile.TemporaryDirectory() as out:
        config = dataclasses.replace(recipes.make_config(recipe, seed, out, quick),
                                     data_root=root)
        return fit(config).test_acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", default="64,256,256", help="three widths, e.g. 48,192,192")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cnnlab", action="store_true", help="also train cnnlab's recipe")
    parser.add_argument("--quick", action="store_true", help="5,000 images, 1 epoch")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3:
        parser.error(f"--widths needs three integers, e.g. 48,192,192; got {args.widths!r}")
    root = args.data_root or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    try:
        train, test = load_dataset("cifar10", "train", root=root), load_dataset("cifar10", "test",
                                                                               root=root)
    except CnnlabError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    mean = train.images.float().mean((0, 2, 3)) / 255
    std = train.images.float().std((0, 2, 3)) / 255
    x, y = normalised(train.images, mean, std), train.labels
    xt, yt = normalised(test.images, mean, std), test.labels
    epochs = args.epochs
    if args.quick:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:5000]
        x, y, xt, yt, epochs = x[keep], y[keep], xt[:2000], yt[:2000], 1
    started = time.perf_counter()
    net = train_reference(widths, epochs, args.seed, x, y)
    plain, tta = tta_accuracy(net, xt, yt)
    seconds = time.perf_counter() - started
    rows = [["plain-PyTorch reference", f"{100 * plain:.2f}%", f"{100 * tta:.2f}%",
             f"{seconds:.0f}"]]
    print(f"reference: test accuracy {100 * plain:.2f}% (1 view), {100 * tta:.2f}% (6 views) "
          f"in {seconds:.0f} s")
    if args.cnnlab:
        started = time.perf_counter()
        acc = run_cnnlab(widths, epochs, args.seed, root, args.quick)
        rows.append(["cnnlab.fit, recipe cifar10-90's settings", "", f"{100 * acc:.2f}%",
                     f"{time.perf_counter() - started:.0f}"])
        print(f"cnnlab: test accuracy {100 * acc:.2f}% (6 views) in {rows[-1][3]} s")
    if args.record and not args.quick:
        table = common.markdown_table(["training", "test acc (1 view)", "test acc (6 views)",
                                       "seconds"], rows)
        common.write_section(f"airbench-reference-{args.widths}-{epochs}",
                             common.recorded_header() + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
