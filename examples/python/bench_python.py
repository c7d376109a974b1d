"""Per-call cost of the Python kernels (decode and prefill shapes) against the same C++ call, and
cos/sin generation against numpy's own outer + cos/sin, with the error at position 2^20 against a
long double reference.

    PYTHONPATH=build/python python3 examples/python/bench_python.py [--cxx build/benchmarks/bench_rotary]

With --cxx, the C++ baseline is bench_rotary's on-the-fly rows of the same shapes and types (the
angles computed per call from the table, as Table.apply does), run in the same process tree just
before the Python calls, on the kernel path the library picks.
"""
import argparse
import json
import subprocess
import time

import numpy as np
import torch

import ropescale


def best_of(fn, repeat=7, number=None):
    if number is None:
        number, t = 1, 0.0
        while t < 0.05:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            t = time.perf_counter() - start
            number *= 2
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def cxx_baseline(bench, path):
    """Seconds per call of bench_rotary's on-the-fly rows: {(shape, type): seconds}."""
    shapes = "decode_1x32x128|prefill_4096x32x128"
    out = subprocess.run([bench, f"--benchmark_filter=^rotary/{path}/(f32|bf16)/({shapes})/"
                          "half_split/on_the_fly/", "--benchmark_format=json",
                          "--benchmark_min_time=0.05"], check=True, capture_output=True,
                         text=True).stdout
    rows = {}
    for b in json.loads(out)["benchmarks"]:
        parts = b["name"].split("/")  # rotary/PATH/TYPE/SHAPE/half_split/on_the_fly/...
        rows[(parts[3], parts[2])] = b["us_per_call"] * 1e-6  # one call (decode is batched)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cxx", help="bench_rotary, for the C++ call of the same shapes")
    ap.add_argument("--path", default="avx2", help="kernel path of the C++ rows (default avx2)")
    args = ap.parse_args()
    cxx = cxx_baseline(args.cxx, args.path) if args.cxx else {}
    cfg = ropescale.load_hf_config({"hidden_size": 4096, "num_attention_heads": 32,
                                    "rope_theta": 500000.0, "max_position_embeddings": 131072,
                                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                                     "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 8192}})
    table = cfg.table_for(131072)
    print(f"table: {table}")
    print("kernel calls (best of 7), in place:")
    for name, tokens in (("decode", 1), ("prefill", 4096)):
        pos = np.arange(tokens, dtype=np.int64) + 100000
        for kind in ("numpy float32", "torch bfloat16"):
            if kind.startswith("numpy"):
                x = np.random.default_rng(0).standard_normal((tokens, 32, 128)).astype(np.float32)
            else:
                x = torch.randn(tokens, 32, 128, dtype=torch.bfloat16)
            t = best_of(lambda: table.apply(x, pos))
            nbytes = tokens * 32 * 128 * (4 if kind.startswith("numpy") else 2)
            base = cxx.get((f"{name}_{tokens}x32x128", "f32" if kind.startswith("numpy") else "bf16"))
            vs = f"  C++ {base * 1e6:8.1f} us, Python / C++ {t / base:5.2f}" if base else ""
            print(f"  {name:8s} [{tokens}, 32, 128] {kind:15s} {t * 1e6:10.1f} us"
                  f"  ({2 * nbytes / t / 1e9:.2f} GB/s read+write){vs}")
    tiny = np.zeros((1, 1, 128), np.float32)
    print(f"  floor: [1, 1, 128] float32 {best_of(lambda: table.apply(tiny, [5])) * 1e6:.1f} us")

    print("cos/sin for 8192 positions ending at 2^20 (float32 out):")
    pos = np.arange(2**20 - 8191, 2**20 + 1, dtype=np.int64)
    inv = table.inv_freq
    ours = best_of(lambda: table.cos_sin(pos), repeat=3)
    inv32 = inv.astype(np.float32)
    np32 = best_of(lambda: (np.cos(np.outer(pos.astype(np.float32), inv32)),
                            np.sin(np.outer(pos.astype(np.float32), inv32))), repeat=3)
    np64 = best_of(lambda: (np.cos(np.outer(pos.astype(np.float64), inv)),
                            np.sin(np.outer(pos.astype(np.float64), inv))), repeat=3)
    ref = np.cos(np.outer(pos.astype(np.longdouble), inv.astype(np.longdouble)))
    c_ours, _ = table.cos_sin(pos)
    c32 = np.cos(np.outer(pos.astype(np.float32), inv32))
    c64 = np.cos(np.outer(pos.astype(np.float64), inv))
    err = lambda c: float(np.abs(c.astype(np.longdouble) - ref).max())  # noqa: E731
    print(f"  ropescale cos_sin      {ours * 1e3:8.2f} ms  max |cos err| {err(c_ours):.2e}")
    print(f"  numpy float32 outer    {np32 * 1e3:8.2f} ms  max |cos err| {err(c32):.2e}")
    print(f"  numpy float64 outer    {np64 * 1e3:8.2f} ms  max |cos err| {err(c64):.2e}")


if __name__ == "__main__":
    main()
