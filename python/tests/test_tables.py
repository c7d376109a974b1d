"""Configs, tables, cos/sin and the kernels through Python, against Hugging Face's golden vectors
(tests/data) and a float64 scalar reference written here from the rotation's definition."""
import json
import math

import numpy as np
import pytest

import ropescale

torch = pytest.importorskip("torch")


def load(data_dir, name):
    with open(data_dir / name) as f:
        return json.load(f)


def test_every_hf_inv_freq_golden_through_python(data_dir):
    golden = load(data_dir, "inv_freq.json")
    assert len(golden["cases"]) == 20
    for case in golden["cases"]:
        yarn = "current" if case["impl"] == "v5yarn" else "legacy"
        cfg = ropescale.load_hf_config(case["config"], yarn=yarn)
        assert cfg.spec.head_dim == case["head_dim"], case["name"]
        assert cfg.spec.rotary_dim == case["rotary_dim"], case["name"]
        assert cfg.rope_type == case["rope_type"], case["name"]
        seq = 0 if case["seq_len"] is None else case["seq_len"]
        table = cfg.table_for(seq)
        want = np.array(case["inv_freq_f64"])
        assert table.inv_freq.dtype == np.float64
        np.testing.assert_allclose(table.inv_freq, want, rtol=1e-12, atol=0, err_msg=case["name"])
        assert table.attention_factor == pytest.approx(case["attention_factor"], rel=1e-12)
        np.testing.assert_allclose(table.factors, table.factor_table.factors)
        np.testing.assert_allclose(
            table.inv_freq, table.spec.base_inv_freq / table.factors, rtol=1e-15
        )


def test_config_from_path_and_dict_agree_and_export_round_trips(data_dir):
    path = data_dir / "phi4_mini_instruct.json"
    a = ropescale.load_hf_config(path)
    b = ropescale.load_hf_config(str(path))
    c = ropescale.load_hf_config(load(data_dir, "phi4_mini_instruct.json"))
    assert a == b == c
    assert a.rope_type == "longrope"
    assert a.table_for(4096).method == a.table_for(0).method
    assert a.window_for(4096) == "short" and a.window_for(4097) == "long"
    scaling = a.to_rope_scaling()
    assert scaling["rope_type"] == "longrope"
    exported = a.to_hf_config()
    again = ropescale.load_hf_config({**load(data_dir, "phi4_mini_instruct.json"), **exported})
    np.testing.assert_array_equal(again.table_for(8192).inv_freq, a.table_for(8192).inv_freq)
    t = a.table_for(8192)
    assert (t.rotary_dim, t.head_dim, t.frequency_dim, t.pair_layout) == (96, 128, 96, "half_split")
    assert "longrope" in repr(t) and "rotary_dim=96" in repr(t)


def test_per_layer_reader(data_dir):
    model = ropescale.load_hf_model(data_dir / "gemma3_4b_it.json")
    assert not model.uniform
    kinds = dict(model.kinds)
    assert len(kinds) == 2
    for layer in range(model.num_layers):
        assert model.layer(layer) == model.kinds[model.layer_kind[layer]][1]
    sliding = [l for l, t in enumerate(model.layer_types) if t == "sliding_attention"][0]
    full = [l for l, t in enumerate(model.layer_types) if t == "full_attention"][0]
    assert model.table_for(sliding).spec.rope_theta != model.table_for(full).spec.rope_theta
    with pytest.raises(ropescale.Error, match="layer = -1"):
        model.layer(-1)


def reference_rotate(x, inv_freq, m, positions, layout, freq_dim=None):
    """x: float64 [tokens, heads, head_dim]; the forward rotation of rotary.hpp's header."""
    x = np.array(x, dtype=np.float64)
    out = x.copy()
    pairs = len(inv_freq)
    half = (freq_dim or 2 * pairs) // 2
    for t, p in enumerate(positions):
        for i in range(pairs):
            a = p * inv_freq[i]
            c, s = math.cos(a), math.sin(a)
            i0, i1 = (i, i + half) if layout == "half_split" else (2 * i, 2 * i + 1)
            xv, yv = x[t, :, i0], x[t, :, i1]
            out[t, :, i0] = m * (xv * c - yv * s)
            out[t, :, i1] = m * (yv * c + xv * s)
    return out


def yarn_table(layout="half_split"):
    cfg = ropescale.load_hf_config(
        {
            "hidden_size": 512,
            "num_attention_heads": 8,
            "rope_theta": 10000.0,
            "max_position_embeddings": 16384,
            "partial_rotary_factor": 0.75,
            "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                             "original_max_position_embeddings": 4096},
        }
    )
    return ropescale.Table(cfg.spec, cfg.table_for(0).factor_table, layout)


POSITIONS = [0, 1, 7, 4095, 4096, 16383, 131071]
TOL = {"float64": 1e-12, "float32": 3e-6, "float16": 4e-3, "bfloat16": 3e-2}


@pytest.mark.parametrize("layout", ["half_split", "interleaved"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_kernels_match_the_scalar_reference(layout, kind, dtype):
    if kind == "numpy" and dtype == "bfloat16":
        pytest.skip("numpy has no bfloat16")
    table = yarn_table(layout)
    assert table.rotary_dim == 48 and table.head_dim == 64
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((len(POSITIONS), 3, 64))
    if kind == "numpy":
        x = x0.astype(dtype)
        stored = x.astype(np.float64)
    else:
        x = torch.from_numpy(x0.copy()).to(getattr(torch, dtype))
        stored = x.to(torch.float64).numpy().copy()
    ptr = x.ctypes.data if kind == "numpy" else x.data_ptr()
    table.apply(x, POSITIONS)
    assert (x.ctypes.data if kind == "numpy" else x.data_ptr()) == ptr  # in place, no copy
    got = x.astype(np.float64) if kind == "numpy" else x.to(torch.float64).numpy()
    want = reference_rotate(stored, table.inv_freq, table.attention_factor, POSITIONS, layout)
    err = np.abs(got - want).max()
    assert err <= TOL[dtype] * max(1.0, np.abs(want).max()), err
    np.testing.assert_array_equal(got[..., 48:], stored[..., 48:])  # pass-through untouched
    # inverse undoes forward (to the storage type's precision)
    table.apply(x, POSITIONS, direction="inverse")
    back = x.astype(np.float64) if kind == "numpy" else x.to(torch.float64).numpy()
    assert np.abs(back - stored).max() <= 4 * TOL[dtype] * max(1.0, np.abs(stored).max())


def test_strided_views_rotate_without_a_copy():
    table = yarn_table()
    rng = np.random.default_rng(1)
    # Hugging Face's [batch, heads, seq, head_dim]: x[b].transpose(0, 1) is [seq, heads, dim].
    q = torch.from_numpy(rng.standard_normal((2, 4, len(POSITIONS), 64)).astype(np.float32))
    before = q.clone()
    view = q[1].transpose(0, 1)
    assert not view.is_contiguous()
    table.apply(view, POSITIONS)
    want = reference_rotate(before[1].transpose(0, 1).double().numpy(), table.inv_freq,
                            table.attention_factor, POSITIONS, "half_split")
    assert np.abs(q[1].transpose(0, 1).double().numpy() - want).max() < 3e-6
    assert torch.equal(q[0], before[0])  # the other batch entry is untouched
    # numpy: a [tokens, heads, dim] slice of a larger buffer
    big = rng.standard_normal((len(POSITIONS), 5, 64))
    ref = big.copy()
    table.apply(big[:, 1:4, :], POSITIONS)
    np.testing.assert_array_equal(big[:, 0], ref[:, 0])
    np.testing.assert_allclose(
        big[:, 1:4],
        reference_rotate(ref[:, 1:4], table.inv_freq, table.attention_factor, POSITIONS,
                         "half_split"), atol=1e-12)


def test_cos_sin_cache_matches_hf_and_the_reference(data_dir):
    golden = load(data_dir, "cos_sin_apply_llama31_8b.json")
    case = golden["cases"][0]
    cfg = ropescale.load_hf_config(golden["config"])
    table = cfg.table_for(max(case["positions"]) + 1)
    positions = case["positions"]
    cos, sin = table.cos_sin(positions, dtype=np.float64, duplicate=True)
    assert cos.shape == (len(positions), 128) and cos.dtype == np.float64
    angles = np.outer(np.array(positions, dtype=np.float64), table.inv_freq)
    np.testing.assert_allclose(cos[:, :64], np.cos(angles) * table.attention_factor, atol=1e-9)
    np.testing.assert_allclose(sin[:, 64:], np.sin(angles) * table.attention_factor, atol=1e-9)
    # HF's float32 cos/sin agree where float32 angles are still exact enough (positions <= 100).
    hf_cos = np.array(case["cos"])
    short = [i for i, p in enumerate(positions) if p <= 100]
    np.testing.assert_allclose(cos[short], hf_cos[short], atol=2e-5)
    c32, s32 = table.cos_sin(positions)
    assert c32.dtype == np.float32 and c32.shape == (len(positions), 64)
    np.testing.assert_allclose(c32, cos[:, :64], atol=1e-6)
    # the keys: HF's k [1, 1, S, D] rotated by the table
    k = np.array(case["k"], dtype=np.float32).reshape(len(positions), 1, 128)
    k_hf = np.array(case["k_embed"], dtype=np.float32).reshape(len(positions), 1, 128)
    table.apply(k, positions)
    np.testing.assert_allclose(k[short], k_hf[short], atol=2e-5)


def test_key_rerotation_equals_rotating_with_the_new_table(data_dir):
    cfg = ropescale.load_hf_config(data_dir / "phi4_mini_instruct.json")
    short, long = cfg.table_for(4096), cfg.table_for(8192)
    rng = np.random.default_rng(3)
    raw = rng.standard_normal((5, 2, 128)).astype(np.float64)
    positions = [0, 3, 100, 2000, 4095]
    keys = raw.copy()
    short.apply(keys, positions)
    ropescale.rerotate_keys(short, long, keys, positions)
    direct = raw.copy()
    long.apply(direct, positions)
    np.testing.assert_allclose(keys, direct, atol=1e-12)


def test_bad_inputs_are_refused_by_name_and_nothing_is_written():
    table = yarn_table()
    x = np.ones((3, 2, 64), dtype=np.float32)

    def refused(arr, positions, match, **kw):
        before = np.array(arr, copy=True) if isinstance(arr, np.ndarray) else None
        with pytest.raises(ropescale.Error, match=match):
            table.apply(arr, positions, **kw)
        if before is not None:
            np.testing.assert_array_equal(arr, before)

    assert issubclass(ropescale.Error, ValueError)
    refused(x.astype(np.int32), [0, 1, 2], "dtype int32")
    refused(x.astype(np.complex64), [0, 1, 2], "dtype complex64")
    refused(np.ones((3, 2, 32), np.float32), [0, 1, 2], r"shape\[-1\] = \"32\"")
    refused(np.ones((3, 2, 2, 64), np.float32), [0, 1, 2], "ndim")
    refused(np.ones((3, 128), np.float32)[:, ::2], [0, 1, 2], r"stride\(-1\)")
    ro = np.ones((3, 2, 64), np.float32)
    ro.setflags(write=False)
    refused(ro, [0, 1, 2], "read-only")
    overlap = np.lib.stride_tricks.as_strided(np.ones(64, np.float32), (3, 2, 64), (0, 0, 4))
    refused(overlap, [0, 1, 2], "must not overlap")
    refused(x, [0, 1], r"positions.size\(\) = \"2\"")
    refused(x, [0, 1, -4], r"positions\[2\] = -4")
    refused(x, [0, 1, 2**60], r"positions\[2\]")
    refused(x, [0.5, 1, 2], "integers")
    refused(x, [[0, 1, 2]], "1-D")
    refused(x, [0, 1, 2], "direction", direction="sideways")
    refused([[1.0] * 64] * 3, [0, 1, 2], "numpy array or a torch CPU tensor")
    t = torch.ones(3, 2, 64, requires_grad=True)
    with pytest.raises(ropescale.Error, match="requires_grad"):
        table.apply(t, [0, 1, 2])
    with pytest.raises(ropescale.Error, match="dtype torch.int64"):
        table.apply(torch.ones(3, 2, 64, dtype=torch.int64), [0, 1, 2])
    with pytest.raises(ropescale.Error, match=r"factors\[1\] = nan"):
        ropescale.FactorTable([1.0, float("nan")])
    with pytest.raises(ropescale.Error, match="factor table length"):
        ropescale.Table(table.spec, ropescale.FactorTable([1.0, 2.0]))
    with pytest.raises(ropescale.Error, match="rotary_dim = 7"):
        ropescale.RopeSpec(head_dim=8, rotary_dim=7)
    with pytest.raises(ropescale.Error, match="pair_layout|layout"):
        ropescale.Table(table.spec, table.factor_table, "diagonal")
    with pytest.raises(ropescale.Error, match=r"positions\[0\] = -1"):
        table.cos_sin([-1, 2])
    with pytest.raises(ropescale.Error, match="dtype"):
        table.cos_sin([1, 2], dtype=np.int32)
    with pytest.raises(ropescale.Error):
        ropescale.load_hf_config({"hidden_size": 64})
    with pytest.raises(ropescale.Error, match="path or a dict"):
        ropescale.load_hf_config(42)


def test_readme_quickstart_runs(data_dir):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"## Quick start: Python.*?```python\n(.*?)```", readme, re.S).group(1)
    code = block.replace('"config.json"', repr(str(data_dir / "llama31_8b.json")))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    table, q = scope["table"], scope["q"]
    assert q.dtype == torch.bfloat16 and table.rotary_dim == 128
    assert scope["cos"].shape == (8192, 128)
    # the re-rotated keys equal keys rotated with the long table directly
    k = scope["k"]
    assert k.shape == (4096, 8, 128)
