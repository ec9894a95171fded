"""Mutation score of the gradient tests: plant wrong constants in the backward of every layer and loss.

Each mutant replaces one snippet of the package source (a missing 1/S, 1/ε, 1/λ or 1/θ, a factor 2, a flipped
sign, a wrong step) in a temporary copy of the repository, runs the selected tests there, and counts the mutant
as *killed* when a test fails. By default the selection is the reference tests (tests/layers/
test_exact_references.py and test_reference_projections.py), which check values against closed forms,
enumerations of Y and large fixed-seed Monte Carlo references: every mutant should be killed by one of
them, not by a test that compares two paths of the library. ``--suite all`` runs tests/layers and
tests/losses instead.

Usage::

    python tools/mutation_score.py                 # all mutants, reference tests, 2 parallel jobs
    python tools/mutation_score.py --list          # the mutants
    python tools/mutation_score.py -m fd-no-lambda # one mutant
    python tools/mutation_score.py --markdown docs-table.md

A snippet that is not found exactly once makes the script stop with an error naming the mutant (the
source moved: update the mutant), so that a stale mutant never counts as killed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_TESTS = [
    "tests/layers/test_exact_references.py",
    "tests/layers/test_reference_projections.py",
    "tests/layers/test_reference_targets.py",
]
ALL_TESTS = ["tests/layers", "tests/losses"]


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file in the package
    old: str  # snippet replaced (must occur exactly `count` times, or once at `occurrence`)
    new: str
    what: str  # the planted error, in words
    select: str  # pytest -k expression of the reference tests that exercise the code
    occurrence: int | None = None  # which match to replace when the snippet occurs several times
    replace_all: bool = False


PERTURBED = "perturbed or softmax or phi or fenchel or pushforward"
FD = "imle or aimle or blackbox or converges"
M = Mutant
MUTANTS = [
    # score-function rule (PerturbedAdditive / Perturbed with an Additive perturbation, Pushforward, ExperienceLoss)
    M("additive-no-1/S", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(1.0 / self.epsilon)", "additive score VJP: sum over samples instead of mean (×S)", PERTURBED, 0),
    M("additive-no-1/eps", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(1.0 / noise.shape[0])", "additive score VJP: missing 1/ε (×ε)", PERTURBED, 0),
    M("additive-x2", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(2.0 / (noise.shape[0] * self.epsilon))", "additive score VJP ×2", PERTURBED, 0),
    M("additive-sign", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(-1.0 / (noise.shape[0] * self.epsilon))", "additive score VJP: flipped sign", PERTURBED, 0),
    M("pushforward-no-1/eps", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(1.0 / noise.shape[0])", "the same 1/ε mutant, against the Pushforward/ExperienceLoss tests alone",
      "pushforward", 0),
    # multiplicative
    M("mult-no-1/S", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(1.0 / self.epsilon)", "multiplicative score VJP ×S", PERTURBED, 1),
    M("mult-no-1/eps", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(1.0 / noise.shape[0])", "multiplicative score VJP: missing 1/ε", PERTURBED, 1),
    M("mult-no-1/theta", "colayers/perturb/perturbation.py",
      "g / torch.where(zero, torch.ones_like(theta), theta))", "g)",
      "multiplicative score VJP: missing 1/θ", PERTURBED),
    M("mult-sign", "colayers/perturb/perturbation.py", "mul_(1.0 / (noise.shape[0] * self.epsilon))",
      "mul_(-1.0 / (noise.shape[0] * self.epsilon))", "multiplicative score VJP: flipped sign", PERTURBED, 1),
    M("baseline-scale", "colayers/perturb/perturbation.py", "* (s / (s - 1))", "* s",
      "leave-one-out baseline: ×(S−1) on the centred values", PERTURBED),
    # finite differences (IMLE, AIMLE, Blackbox)
    M("fd-no-lambda", "colayers/layers/rules.py", "diff.div_(lambda_)", "diff.div_(1.0)",
      "finite difference: missing 1/λ (fixed λ: IMLE, Blackbox)", FD),
    M("fd-no-lambda-tensor", "colayers/layers/rules.py", "diff = diff / _unsqueeze_to(lambda_, diff.ndim)",
      "diff = diff", "finite difference: missing 1/λ (per-instance λ: AIMLE)", FD),
    M("fd-x-S", "colayers/layers/rules.py", "else diff.mean(0)", "else diff.sum(0)",
      "finite difference: sum over samples (×S)", FD),
    M("fd-sign", "colayers/layers/rules.py", "diff = atoms - target_atoms", "diff = target_atoms - atoms",
      "finite difference: flipped sign", FD),
    M("fd-x2", "colayers/layers/rules.py", "diff.div_(lambda_)", "diff.div_(lambda_ / 2)",
      "finite difference ×2 (fixed λ)", FD),
    M("fd-target-2lambda", "colayers/layers/rules.py", "perturb(rep(center - step), 1)",
      "perturb(rep(center - 2 * step), 1)", "one-sided target θ − 2λȳ with divisor λ", FD),
    M("fd-central-step", "colayers/layers/rules.py", "half = 0.5 * step", "half = step",
      "central difference: ±λȳ instead of ±λȳ/2", FD),
    M("blackbox-no-lambda", "colayers/layers/rules.py", "diff.div_(lambda_)", "diff.div_(1.0)",
      "the same 1/λ mutant, against the Blackbox tests alone", "blackbox"),
    M("blackbox-sign", "colayers/layers/rules.py", "diff = atoms - target_atoms", "diff = target_atoms - atoms",
      "the same sign mutant, against the Blackbox tests alone", "blackbox"),
    M("aimle-no-1/S", "colayers/layers/rules.py", "else diff.mean(0)", "else diff.sum(0)",
      "the same ×S mutant, against the AIMLE tests alone", "aimle"),
    M("aimle-lambda-x2", "colayers/layers/rules.py", "return beta * norm_theta /", "return 2 * beta * norm_theta /",
      "AIMLE: λ = 2β‖θ‖/‖ȳ‖", "aimle"),
    # straight-through, regularized layers
    M("identity-x2", "colayers/layers/rules.py", "-grad_output if negative else grad_output",
      "-grad_output if negative else 2 * grad_output", "straight-through ×2", "identity"),
    M("identity-sign", "colayers/layers/rules.py", "-grad_output if negative else grad_output",
      "grad_output if negative else -grad_output", "straight-through: flipped signs", "identity"),
    M("sparsemax-x2", "colayers/layers/regularized.py", "return s * (grad_output - mean)",
      "return 2 * s * (grad_output - mean)", "sparsemax VJP ×2", "sparse_argmax"),
    M("sparsemax-no-mean", "colayers/layers/regularized.py", "return s * (grad_output - mean)",
      "return s * grad_output", "sparsemax VJP: missing the −ssᵀ/|s| term", "sparse_argmax"),
    M("active-set-x2", "colayers/layers/active_set.py", "coef = pinv_psd(gram) @ rhs", "coef = 2 * pinv_psd(gram) @ rhs",
      "SparseMAP (active-set) VJP ×2", "sparsemap"),
    M("active-set-sign", "colayers/layers/active_set.py", "coef = pinv_psd(gram) @ rhs", "coef = -pinv_psd(gram) @ rhs",
      "SparseMAP (active-set) VJP: flipped sign", "sparsemap"),
    # losses
    M("fy-perturbed-x-S", "colayers/losses/fenchel_young.py", "(mean_g,) = torch.autograd.grad(eta, t, g_atoms / num_samples)",
      "(mean_g,) = torch.autograd.grad(eta, t, g_atoms)", "perturbed FY gradient: sum of the samples (×S)", "fenchel"),
    M("fy-sign", "colayers/losses/fenchel_young.py", "return value, mean_g - oracle.g(y_target), scale",
      "return value, oracle.g(y_target) - mean_g, scale", "perturbed FY gradient: flipped sign", "fenchel"),
    M("fy-mult-no-factor", "colayers/losses/fenchel_young.py", "eta = pert.apply(t, sample.noise)",
      "eta = t + 0 * pert.apply(t, sample.noise)", "multiplicative FY gradient without the factor e^{εZ−ε²/2}",
      "fenchel"),
    M("fy-regularized-x2", "colayers/losses/fenchel_young.py", "return value, mu - y_target, scale",
      "return value, 2 * (mu - y_target), scale", "regularized FY gradient ×2 (SoftArgmax, SparseArgmax, FW)",
      "regularized_fenchel"),
    M("fw-no-1/s", "colayers/layers/active_set.py", "grad = grad * ctx.scale", "grad = grad",
      "Frank-Wolfe VJP with SquaredNorm(s): missing 1/s", "sparsemap"),
    M("value-with-gradient-x2", "colayers/losses/_common.py", "return go * grad, None, None",
      "return 2 * go * grad, None, None", "every hand-written loss gradient ×2 (FY, SSVM, imitation)",
      "fenchel or svm or imitation"),
    M("spo-no-alpha", "colayers/losses/spo.py", "go * (ctx.alpha * g_diff)", "go * g_diff",
      "SPO+ gradient: missing α", "spo"),
    M("spo-sign", "colayers/losses/spo.py", "go * (ctx.alpha * g_diff)", "-go * (ctx.alpha * g_diff)",
      "SPO+ gradient: flipped sign", "spo"),
    M("spo-true-sign", "colayers/losses/spo.py", "grad_true = -go * g_diff", "grad_true = go * g_diff",
      "SPO+ gradient in the true scores: flipped sign", "spo"),
    M("ssvm-x2", "colayers/losses/ssvm.py", "grad = oracle.g(y_hat) - oracle.g(y_target)",
      "grad = 2 * (oracle.g(y_hat) - oracle.g(y_target))", "structured SVM gradient ×2", "svm"),
    M("imitation-no-alpha", "colayers/losses/imitation.py", "grad = self.alpha * (y_hat - y_target)",
      "grad = (y_hat - y_target)", "imitation gradient: missing α", "imitation"),
]


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.path
    text = path.read_text()
    starts = [m.start() for m in re.finditer(re.escape(mutant.old), text)]
    if mutant.replace_all:
        if not starts:
            raise SystemExit(f"mutant {mutant.name}: snippet {mutant.old!r} not found in {mutant.path}")
        text = text.replace(mutant.old, mutant.new)
    else:
        if mutant.occurrence is None and len(starts) != 1:
            raise SystemExit(
                f"mutant {mutant.name}: snippet {mutant.old!r} found {len(starts)} times in {mutant.path} (need 1)"
            )
        i = starts[mutant.occurrence or 0] if mutant.occurrence is None or mutant.occurrence < len(starts) else None
        if i is None:
            raise SystemExit(f"mutant {mutant.name}: occurrence {mutant.occurrence} of {mutant.old!r} not found")
        text = text[:i] + mutant.new + text[i + len(mutant.old) :]
    path.write_text(text)


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(ROOT / "colayers", dest / "colayers", ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run_tests(root: Path, tests: list[str], select: str | None, timeout: float) -> tuple[bool, str, float]:
    """(passed, first failing test id or '', seconds)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    if select:
        cmd += ["-k", select]
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "(timeout)", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
    errors = re.findall(r"^ERROR (\S+)", proc.stdout, flags=re.M)
    if proc.returncode == 5:  # nothing collected: the selection is stale
        return False, "(no test selected)", seconds
    return proc.returncode == 0, (failed or errors or [proc.stdout.strip().splitlines()[-1:]])[0], seconds


def evaluate(mutant: Mutant | None, tests: list[str], use_select: bool, timeout: float):
    with tempfile.TemporaryDirectory(prefix="colayers-mutant-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        if mutant is not None:
            apply(mutant, root)
        select = mutant.select if (mutant is not None and use_select) else None
        return run_tests(root, tests, select, timeout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--mutant", action="append", help="run only these mutants (by name)")
    parser.add_argument("--suite", choices=("reference", "all"), default="reference")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--markdown", help="also write the result table to this file")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.mutant or m.name in args.mutant]
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:24s} {m.path:36s} {m.what}")
        return 0
    if args.mutant and len(mutants) != len(args.mutant):
        raise SystemExit(f"unknown mutant in {args.mutant}; --list shows them")
    # every snippet must be found before anything runs
    with tempfile.TemporaryDirectory() as tmp:
        copy_tree(Path(tmp))
        for m in mutants:
            apply(m, Path(tmp))
            shutil.copy(ROOT / m.path, Path(tmp) / m.path)
    tests = REFERENCE_TESTS if args.suite == "reference" else ALL_TESTS
    use_select = args.suite == "reference"
    t0 = time.perf_counter()
    ok, first, secs = evaluate(None, tests, False, args.timeout)
    if not ok:
        raise SystemExit(f"the unmutated package fails the selected tests ({first}); fix that first")
    print(f"baseline: the selected tests pass on the unmutated package ({secs:.0f} s)")
    rows = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(evaluate, m, tests, use_select, args.timeout): m for m in mutants}
        for fut in concurrent.futures.as_completed(futures):
            m = futures[fut]
            passed, first, secs = fut.result()
            rows.append((m, not passed, first, secs))
            print(f"{'KILLED ' if not passed else 'SURVIVED'} {m.name:24s} {secs:5.0f} s  {first}", flush=True)
    rows.sort(key=lambda r: MUTANTS.index(r[0]))
    killed = sum(r[1] for r in rows)
    total = time.perf_counter() - t0
    print(f"\nmutation score: {killed}/{len(rows)} killed ({args.suite} tests, {total:.0f} s)")
    for m, k, first, _ in rows:
        if not k:
            print(f"  survived: {m.name} ({m.what})")
    if args.markdown:
        lines = ["| mutant | file | planted error | killed by |", "|---|---|---|---|"]
        for m, k, first, _ in rows:
            test = first.split("::", 1)[-1] if k else "**survived**"
            lines.append(f"| `{m.name}` | `{m.path}` | {m.what} | `{test}` |" if k else
                         f"| `{m.name}` | `{m.path}` | {m.what} | {test} |")
        lines.append(f"\nScore: {killed}/{len(rows)} mutants killed by the {args.suite} tests.")
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
