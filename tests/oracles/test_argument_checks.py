"""Shapes and flags that used to be accepted silently: SolverOracle's event and solution shapes and its
``deterministic`` flag, and grid_dag_paths on a grid with too many paths to list."""

import math

import numpy as np
import pytest
import torch

from colayers.oracles import GridDAGShortestPath, SolverOracle, grid_dag_paths


def first_entry(theta):
    return np.eye(theta.shape[0])[0]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"event_shape": (-1,)}, ValueError, r"event_shape must be a sequence of integers ≥ 0 \(a shape\); got \(-1,\)"),
    ({"event_shape": (3, -2)}, ValueError, r"event_shape must be a sequence of integers ≥ 0 .*; got \(3, -2\)"),
    ({"event_shape": (2.5,)}, ValueError, r"event_shape must be .*; got \(2.5,\)"),
    ({"event_shape": (True,)}, ValueError, r"event_shape must be .*; got \(True,\)"),
    ({"event_shape": 3}, TypeError, "event_shape must be a sequence of integers ≥ 0 \\(a shape\\); got int 3"),
    ({"event_shape": "3"}, TypeError, "event_shape must be a sequence .*; got str '3'"),
    ({"event_shape": (3,), "solution_shape": (-1,)}, ValueError, r"solution_shape must be .*; got \(-1,\)"),
    ({"event_shape": (3,), "deterministic": "no"}, TypeError, "deterministic must be a bool; got str 'no'"),
])
def test_solver_oracle_refuses_a_bad_shape_or_flag_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        SolverOracle(first_entry, **kwargs)


def test_solver_oracle_keeps_valid_shapes():
    oracle = SolverOracle(first_entry, event_shape=torch.Size([3]), deterministic=False)
    assert oracle.event_shape == (3,) and oracle.deterministic is False
    assert SolverOracle(first_entry, event_shape=[np.int64(3)]).event_shape == (3,)
    assert SolverOracle(first_entry, event_shape=np.array([3])).event_shape == (3,)
    assert oracle(torch.tensor([[0.0, 1.0, 2.0]])).tolist() == [[1.0, 0.0, 0.0]]


def test_grid_dag_paths_refuses_a_grid_with_too_many_paths_naming_the_count():
    count = math.comb(30, 15)
    with pytest.raises(ValueError, match=rf"grid_dag_paths\(16, 16\) would list {count} paths of 480 edges "
                                         r"\(297.8 GB as float32\), more than max_paths=100000; use "
                                         r"GridDAGShortestPath\(16, 16\)"):
        grid_dag_paths(16, 16)
    with pytest.raises(ValueError, match="would list 70 paths of 40 edges"):
        grid_dag_paths(5, 5, max_paths=69)
    with pytest.raises(ValueError, match="max_paths must be an integer ≥ 1; got 0"):
        grid_dag_paths(2, 2, max_paths=0)
    with pytest.raises(ValueError, match="height must be an integer ≥ 1; got 0"):
        grid_dag_paths(0, 3)


def test_grid_dag_paths_lists_every_path_exactly_once():
    # each row is a path of the grid DAG: h + w - 2 edges, each vertex entered once, from 0 to the last vertex
    h, w = 4, 5
    paths = grid_dag_paths(h, w, max_paths=35)
    edges = GridDAGShortestPath(h, w).edges
    assert paths.shape == (math.comb(h + w - 2, h - 1), len(edges))
    assert torch.unique(paths, dim=0).shape[0] == paths.shape[0]
    for row in paths:
        used = [edges[k] for k in row.nonzero().flatten().tolist()]
        assert len(used) == h + w - 2
        starts, ends = sorted(u for u, _ in used), sorted(v for _, v in used)
        assert starts[0] == 0 and ends[-1] == h * w - 1 and set(starts[1:]) == set(ends[:-1])
    cost = torch.rand(16, len(edges), generator=torch.Generator().manual_seed(0))
    best = paths[(cost @ paths.T).argmin(dim=1)]
    assert torch.equal(best, GridDAGShortestPath(h, w).shortest_path(cost))
