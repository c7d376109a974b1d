"""The torch tiny Llama (examples/python/tiny_llama.py) against the C++ model
(examples/tiny_llama): two independent implementations, same tokens and table, log-probabilities
within 1e-4."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import ropescale

torch = pytest.importorskip("torch")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "python"))
from tiny_llama import TinyLlama  # noqa: E402

EXE = os.environ.get("ROPESCALE_TINY_LLAMA_LOGPROBS")


@pytest.mark.skipif(not EXE, reason="the C++ model's helper is built by CMake with the tests")
@pytest.mark.parametrize("model_dir,seq_len", [("tiny-llama", 200), ("tiny-llama-long", 400)])
def test_torch_log_probs_equal_the_cpp_model(model_dir, seq_len):
    directory = ROOT / "examples" / "data" / model_dir
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 256, size=48).tolist()
    out = subprocess.run([EXE, str(directory), str(seq_len), *map(str, tokens)],
                         check=True, capture_output=True, text=True).stdout
    cpp = np.array(json.loads(out)["log_probs"], dtype=np.float64)
    model = TinyLlama.load(directory)
    table = ropescale.load_hf_config(directory / "config.json").table_for(seq_len)
    with torch.no_grad():
        logits = model(torch.tensor(tokens), table)
    ours = torch.log_softmax(logits.double(), dim=-1).numpy()
    assert ours.shape == cpp.shape == (48, 256)
    assert np.abs(ours - cpp).max() <= 1e-4
    if model_dir == "tiny-llama-long":
        assert table.method == "longrope" and not np.all(table.factors == 1.0)
