"""PyEPO's own solutions, one instance after the other, as the peer tests' reference."""

import numpy as np
import torch


def solve_pyepo(optmodel, c: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``optmodel``'s optimal solution for each row of costs ``c`` (setObj, solve), stacked as a tensor."""
    sols = []
    for row in c:
        optmodel.setObj(row.numpy())
        sol, _ = optmodel.solve()
        sols.append(np.asarray(sol, dtype=float))
    return torch.tensor(np.array(sols), dtype=dtype)
