"""SoftSort / SoftRank refuse a ``descending`` flag that is not a bool (``"False"`` used to mean True)."""

import pytest
import torch

from colayers import SoftRank, SoftSort


@pytest.mark.parametrize("cls", [SoftSort, SoftRank])
@pytest.mark.parametrize("flag", ["False", "no", 0, 1, None])
def test_descending_must_be_a_bool(cls, flag):
    with pytest.raises(TypeError, match=rf"descending must be a bool; got {type(flag).__name__} {flag!r}"):
        cls(descending=flag)


def test_descending_as_a_bool_orders_as_documented():
    theta = torch.tensor([[3.0, 1.0, 2.0]])
    assert SoftSort(strength=0.01, descending=True)(theta).tolist() == [[3.0, 2.0, 1.0]]
    assert SoftSort(strength=0.01, descending=False)(theta).tolist() == [[1.0, 2.0, 3.0]]
    assert SoftRank(strength=0.01, descending=True)(theta).tolist() == [[1.0, 3.0, 2.0]]
    assert SoftRank(strength=0.01)(theta).tolist() == [[3.0, 1.0, 2.0]]
