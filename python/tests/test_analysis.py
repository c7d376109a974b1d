"""Critical dimensions, the window rule, packing and needle documents from Python."""
import numpy as np
import pytest

import ropescale


def test_critical_dims_and_the_published_llama3_table(data_dir):
    cfg = ropescale.load_hf_config(data_dir / "llama3_8b_longrope2.json")
    spec = cfg.spec
    d = ropescale.critical_dims(spec)
    # eq. 7: d/2 * log_theta(L_train / 2pi), rounded up
    exact = 64 * np.log(8192 / (2 * np.pi)) / np.log(500000.0)
    assert d["critical_pair_exact"] == pytest.approx(exact, rel=1e-12)
    assert d["critical_pair"] == int(np.ceil(exact)) and d["critical_dim"] == 2 * d["critical_pair"]
    a = ropescale.analyze_table(spec, 131072, cfg.table_for(131072).factor_table)
    assert a["detected_critical_pair"] == 33
    np.testing.assert_allclose(a["margin"], cfg.table_for(131072).factors - 16.0, rtol=1e-12)


def test_window_rule():
    assert ropescale.rope_window(4096, 4096) == "short"
    assert ropescale.rope_window(4097, 4096) == "long"
    assert ropescale.rope_window(0, 4096) == "short"
    with pytest.raises(ropescale.Error, match="original_max_position"):
        ropescale.rope_window(10, 0)


def test_pack_documents_as_numpy():
    lengths = [100, 3000, 5000, 700, 9000]
    segs = ropescale.pack_documents(lengths, segment_length=8192, original_max_position=4096)
    assert sum(s["length"] for s in segs) == sum(lengths)
    for s in segs:
        assert s["position_ids"].dtype == np.int64 and len(s["position_ids"]) == s["length"]
        assert s["cu_seqlens"][0] == 0 and s["cu_seqlens"][-1] == s["length"]
        assert s["window"] == ropescale.rope_window(int(s["position_ids"].max()) + 1, 4096)
        assert s["max_seqlen"] == int(np.diff(s["cu_seqlens"]).max())
    with pytest.raises(ropescale.Error, match="segment_length"):
        ropescale.pack_documents(lengths, segment_length=0, original_max_position=4096)
    with pytest.raises(ropescale.Error, match="long_packing"):
        ropescale.pack_documents(lengths, 8192, 4096, long_packing="shuffle")


def test_needle_documents_and_answer_scoring():
    haystack = list(range(100, 600))
    template = {"bos": [1], "preamble": [2, 3], "key": [4], "needle_head": [5], "needle_middle": [6],
                "needle_tail": [7], "question_head": [8], "question_tail": [9],
                "answer_head": [10], "answer_tail": [11]}
    digits = list(range(20, 30))
    docs = ropescale.make_needle_documents(haystack, template, digits, length=256, count=3, seed=5)
    assert len(docs) == 3
    for d in docs:
        assert d["tokens"].dtype == np.int32 and len(d["tokens"]) == 256
        assert d["answer_mask"].sum() == len(d["value"]) == 7
        answer = d["tokens"][d["answer_mask"]]
        assert list(answer) == [digits[int(ch)] for ch in d["value"]]
        assert d["answer_end"] == 256
    # answer NLL against a numpy log-softmax written here
    rng = np.random.default_rng(0)
    d = docs[0]
    logits = rng.standard_normal((255, 600))
    nll = ropescale.answer_nll(logits, d["tokens"], d["answer_mask"])
    lp = logits - logits.max(axis=1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
    rows = np.nonzero(d["answer_mask"])[0] - 1
    want = -np.mean(lp[rows, d["tokens"][rows + 1]])
    assert nll == pytest.approx(want, rel=1e-12)
    assert ropescale.perplexity([nll, nll]) == pytest.approx(np.exp(nll), rel=1e-12)
    with pytest.raises(ropescale.Error, match="digit_tokens"):
        ropescale.make_needle_documents(haystack, template, digits[:9], length=256)
    with pytest.raises(ropescale.Error, match="unknown key"):
        ropescale.make_needle_documents(haystack, {"bos": [1], "bogus": [2]}, digits, length=256)
    with pytest.raises(ropescale.Error, match="logits"):
        ropescale.answer_nll(logits[:10], d["tokens"], d["answer_mask"])
    with pytest.raises(ropescale.Error, match=r"losses\[0\]"):
        ropescale.perplexity([float("nan")])
