"""The shipped tiny Llama (examples/data/tiny-llama*) in PyTorch, its rotary tables from ropescale.

A second, independent implementation of examples/tiny_llama's forward pass: config.json and
model.safetensors are read with json and numpy (no transformers), the layers are Hugging Face's
LlamaForCausalLM (RMSNorm, rotate_half RoPE, causal attention, SwiGLU, untied LM head), and the
cos/sin tables come from ropescale (Table.cos_sin: attention factor included, angles range-reduced
in double). python/tests/test_tiny_llama.py checks its log-probabilities against the C++ model's.

    model = TinyLlama.load("examples/data/tiny-llama")
    table = ropescale.load_hf_config("examples/data/tiny-llama/config.json").table_for(256)
    logits = model(torch.tensor(tokens), table)        # [tokens, vocab]
"""
import json
import pathlib

import numpy as np
import torch

import ropescale

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read_safetensors(path):
    """{name: float32 numpy array} from a .safetensors file (8-byte header size, JSON header)."""
    raw = pathlib.Path(path).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        array = np.frombuffer(raw, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize,
                              offset=8 + size + begin)
        out[name] = array.reshape(info["shape"]).astype(np.float32)
    return out


class TinyLlama(torch.nn.Module):
    def __init__(self, config, weights):
        super().__init__()
        self.config = config
        self.w = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
        self.eps = float(config["rms_norm_eps"])
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads", self.heads)
        self.head_dim = config.get("head_dim", config["hidden_size"] // self.heads)

    @classmethod
    def load(cls, directory):
        d = pathlib.Path(directory)
        config = json.loads((d / "config.json").read_text())
        return cls(config, read_safetensors(d / "model.safetensors"))

    def rms_norm(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def forward(self, tokens, table, positions=None):
        """Logits [tokens, vocab] of one sequence (plain causal attention)."""
        n = tokens.shape[0]
        if positions is None:
            positions = np.arange(n, dtype=np.int64)
        cos, sin = table.cos_sin(positions, dtype=np.float32, duplicate=True)
        cos, sin = torch.from_numpy(cos)[:, None, :], torch.from_numpy(sin)[:, None, :]
        w = self.w
        x = w["model.embed_tokens.weight"][tokens]
        mask = torch.full((n, n), float("-inf")).triu(1)
        for l in range(self.config["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.rms_norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, self.heads, self.head_dim)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, self.kv_heads, self.head_dim)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, self.kv_heads, self.head_dim)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            group = self.heads // self.kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            scores = torch.einsum("qhd,khd->hqk", q, k) / self.head_dim**0.5 + mask
            attn = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(n, -1)
            x = x + attn @ w[p + "self_attn.o_proj.weight"].T
            h = self.rms_norm(x, w[p + "post_attention_layernorm.weight"])
            gate = torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T)
            x = x + (gate * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = self.rms_norm(x, w["model.norm.weight"])
        return x @ w["lm_head.weight"].T
