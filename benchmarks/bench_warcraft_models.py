"""CPU time of one training step of the Warcraft models: the small CNN against the papers' truncated ResNet-18.

One step = forward, a mean-squared-error loss on the tile scores, backward and an Adam step, on a batch of
12×12 maps (96×96 images), torch with one thread. The two models alternate step by step (A, B, A, B...), and the
process CPU time of each step is summed per model, so machine load affects both alike.

    python benchmarks/bench_warcraft_models.py [--batch 32] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from colayers.studies import TruncatedResNet18, WarcraftCNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 96, 96)
    target = -(torch.rand(args.batch, 12, 12) * 9 + 0.8)
    models = {"WarcraftCNN": WarcraftCNN(), "TruncatedResNet18": TruncatedResNet18(12)}
    optims = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    spent = dict.fromkeys(models, 0.0)
    for step in range(args.steps + 2):
        for name, model in models.items():
            t0 = time.process_time()
            loss = torch.nn.functional.mse_loss(model(x), target)
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            if step >= 2:  # two warm-up steps
                spent[name] += time.process_time() - t0
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:18s} {params:8d} parameters  {1000 * spent[name] / args.steps:8.1f} ms CPU per step")
    print(f"ratio ResNet/CNN: {spent['TruncatedResNet18'] / spent['WarcraftCNN']:.1f}x (batch {args.batch})")


if __name__ == "__main__":
    main()
