"""Seconds per forward pass of a small transformer-sized workload at a given torch thread count
(issue 22: `make demo`'s worker on a shared CPU). Prints one JSON line.

The workload is a stack of 12 linear layers of width 576 (SmolLM2-135M's hidden size) over a
batch of 8 x 64 tokens, in float32: the shape of the demo's generation and scoring. Run it once
per --threads on the same machine state; note the load average it prints (other processes).
"""
import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, required=True, help="torch intra-op threads")
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*[torch.nn.Linear(576, 576) for _ in range(12)]).eval()
    x = torch.randn(8 * 64, 576)
    with torch.inference_mode():
        layers(x)  # warm-up
        started = time.perf_counter()
        for _ in range(args.passes):
            layers(x)
        seconds = (time.perf_counter() - started) / args.passes
    print(json.dumps({"threads": args.threads, "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
                      "seconds_per_pass": round(seconds, 4), "passes": args.passes}))


if __name__ == "__main__":
    main()
