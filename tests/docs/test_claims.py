"""Statements of the docs about the API, checked against the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch

import colayers.layers as layers
from colayers import ArgmaxOneHot
from colayers.perturb import Additive

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _named_layers(text: str) -> set[str]:
    return {name for name in re.findall(r"`(\w+)`", text) if name in layers.__all__}


def _layer_classes() -> dict[str, type]:
    """The public layer classes users instantiate (the abstract base OracleLayer left out)."""
    out = {}
    for name in layers.__all__:
        obj = getattr(layers, name)
        if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and obj is not layers.OracleLayer:
            out[name] = obj
    return out


def _distribution_lists() -> tuple[set[str], set[str]]:
    """The layers the perturbations page lists with a distribution, and those it lists without one."""
    section = _section("perturbations.md", "Distributions over solutions")
    having, lacking = section.split("Layers without a distribution:")
    return _named_layers(having), _named_layers(lacking.split("\n\n")[0])


def test_perturbations_page_lists_exactly_the_layers_with_a_distribution():
    # The page names Perturbed "and every subclass": a new estimator built on Perturbed is covered without an edit
    # of the page; every other layer class is named on one of the two lists, and each list is right.
    listed_with, listed_without = _distribution_lists()
    classes = _layer_classes()
    covered = {n for n, c in classes.items() if issubclass(c, layers.Perturbed)}
    assert "Perturbed" in listed_with
    assert "every subclass" in _section("perturbations.md", "Distributions over solutions")
    assert listed_with | listed_without | covered == set(classes), "every layer class is on one of the two lists"
    assert not listed_with & listed_without
    has = {n for n, c in classes.items() if callable(getattr(c, "distribution", None))}
    assert listed_with <= has and has - covered <= listed_with
    assert listed_without == {n for n, c in classes.items() if not hasattr(c, "distribution")}


def _instances():
    """An instance of every layer class with a distribution, built from its signature (a new layer needs no edit
    here): required ``oracle`` and ``perturbation`` arguments get ArgmaxOneHot() and Additive(epsilon=0.7), and the
    settings ``epsilon``, ``temperature`` and ``num_samples`` are set to 0.7, 0.7 and 6 where the layer takes them."""
    oracle = ArgmaxOneHot()
    required = {"oracle": oracle, "perturbation": Additive(epsilon=0.7)}
    settings = {"epsilon": 0.7, "temperature": 0.7, "num_samples": 6}
    out = {}
    for name, cls in _layer_classes().items():
        if not callable(getattr(cls, "distribution", None)):
            continue
        params = inspect.signature(cls).parameters
        args = {n: required[n] for n, p in params.items() if p.default is inspect.Parameter.empty}
        args.update({n: v for n, v in settings.items() if n in params})
        out[name] = cls(**args)
    return out


def test_each_listed_distribution_has_the_layer_output_as_its_mean():
    # What the page says each law is: S samples of weight 1/S, a Dirac at f(theta), or weighted vertices. In each
    # case the law's mean is the layer's forward output (same draws for the sampling layers), and its atoms are
    # solutions (one-hot rows here).
    instances = _instances()
    assert _distribution_lists()[0] <= set(instances)
    theta = torch.tensor([[0.3, 1.2, -0.4, 0.9], [2.0, 0.1, 0.5, 1.1]], dtype=torch.float64)
    for name, layer in instances.items():
        sampling = isinstance(layer, layers.Perturbed) and not layer.deterministic
        kwargs = (lambda: {"generator": torch.Generator().manual_seed(3)}) if sampling else dict
        law = layer.distribution(theta, **kwargs())
        out = layer(theta, **kwargs())
        assert torch.allclose(law.mean, out, atol=1e-6), name
        assert torch.equal(law.atoms.sum(-1), torch.ones(law.atoms.shape[:-1], dtype=theta.dtype)), name
        assert set(law.atoms.unique().tolist()) <= {0.0, 1.0}, name
        if name in ("Blackbox", "IdentityRelaxation"):
            assert law.atoms.shape[0] == 1 and torch.equal(law.atoms[0], ArgmaxOneHot()(theta)), name
        if sampling:
            assert law.atoms.shape[0] == layer.num_samples, name
            assert torch.allclose(law.weights, torch.full_like(law.weights, 1 / layer.num_samples)), name
