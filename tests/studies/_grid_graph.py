"""An independent reference for the Warcraft tests: the 8-neighbour tile graph as a scipy sparse matrix."""

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix


def eight_neighbour_graph(cost: np.ndarray) -> csr_matrix:
    """Tiles ``r * w + c`` of an (h, w) cost map; an edge to each of the up to 8 neighbours, weighted by the cost of
    the tile it enters (the start tile's cost is not on any edge)."""
    h, w = cost.shape
    rows, cols, vals = [], [], []
    for r in range(h):
        for c in range(w):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if (dr or dc) and 0 <= rr < h and 0 <= cc < w:
                        rows.append(r * w + c)
                        cols.append(rr * w + cc)
                        vals.append(float(cost[rr, cc]))  # entering a tile pays its cost
    return coo_matrix((vals, (rows, cols)), shape=(h * w, h * w)).tocsr()
