"""LeNet-5's partial C3 (LeCun et al. 1998, table I): the connection table, its parameter count,
and that absent connections stay absent through training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ModelError
from cnnlab.models import create
from cnnlab.models.catalog import count_parameters
from cnnlab.models.lenet import C3_TABLE, PartialConv2d

# Table I of the paper as printed: one row per S2 map (0-5), one column per C3 map (0-15),
# X where the C3 map takes that S2 map.
PAPER_TABLE_I = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


def c3_of(model: torch.nn.Module) -> PartialConv2d:
    layer = model.features[3]  # C1, activation, S2, then C3
    assert isinstance(layer, PartialConv2d)
    return layer


def test_c3_table_is_the_papers_table_one() -> None:
    columns = [tuple(row for row in range(6) if PAPER_TABLE_I[row][col] == "X")
               for col in range(16)]
    assert C3_TABLE == tuple(columns)
    # the paper's description: maps 0-5 take 3 contiguous S2 maps (cyclically), 6-11 take 4
    # contiguous, 12-14 take 4 non-contiguous, 15 takes all 6
    for j in range(6):
        assert set(C3_TABLE[j]) == {(j + k) % 6 for k in range(3)}
        assert set(C3_TABLE[6 + j]) == {(j + k) % 6 for k in range(4)}
    contiguous4 = [{(s + k) % 6 for k in range(4)} for s in range(6)]
    assert all(len(C3_TABLE[j]) == 4 and set(C3_TABLE[j]) not in contiguous4 for j in (12, 13, 14))
    assert C3_TABLE[15] == (0, 1, 2, 3, 4, 5)


def test_partial_c3_parameter_counts() -> None:
    model = create("lenet5", partial_c3=True)
    c3 = c3_of(model)
    assert sum(len(inputs) for inputs in C3_TABLE) == 60
    assert c3.connected_parameters() == 60 * 25 + 16 == 1516  # paper: 1,516 trainable
    # the stored weight is the full (16, 6, 5, 5); count_parameters counts it whole
    assert count_parameters(c3) == 16 * 6 * 25 + 16 == 2416
    assert count_parameters(model) == count_parameters(create("lenet5")) == 61_706
    # connected total, as lenet5's docstring states: 61,706 - 2,416 + 1,516
    assert count_parameters(model) - count_parameters(c3) + c3.connected_parameters() == 60_806


def test_partial_c3_equals_per_map_convolutions_of_its_inputs() -> None:
    torch.manual_seed(0)
    c3 = c3_of(create("lenet5", partial_c3=True))
    x = torch.randn(2, 6, 14, 14)  # S2's output
    expected = torch.cat([
        F.conv2d(x[:, list(inputs)], c3.weight[j:j + 1, list(inputs)], c3.bias[j:j + 1])
        for j, inputs in enumerate(C3_TABLE)], dim=1)
    torch.testing.assert_close(c3(x), expected)


def test_absent_connections_stay_zero_through_sgd_with_weight_decay() -> None:
    torch.manual_seed(0)
    model = create("lenet5", partial_c3=True)
    c3 = c3_of(model)
    absent = (c3.mask == 0).expand_as(c3.weight)
    assert absent.sum() == 900 and torch.all(c3.weight[absent] == 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    before = c3.weight.detach().clone()
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
        assert torch.all(c3.weight.grad[absent] == 0)
        assert c3.weight.grad[~absent].abs().sum() > 0
        optimizer.step()
    assert torch.all(c3.weight[absent] == 0)
    assert not torch.equal(c3.weight[~absent], before[~absent])  # the connected weights train


def test_partial_c3_refuses_maxout() -> None:
    with pytest.raises(ModelError, match="partial_c3 needs a one-piece activation"):
        create("lenet5", partial_c3=True, activation="maxout")
