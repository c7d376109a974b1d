"""The LongRoPE2 search from Python: ask/tell equals run bit for bit, resume from a checkpoint
file in the middle of a batch, bad answers refused, and the result exported as an HF config."""
import json
import math

import numpy as np
import pytest

import ropescale


def space():
    return ropescale.SearchSpace.longrope2(ropescale.RopeSpec(64, 64, 10000.0, 256), 2048)


def params(**kw):
    base = dict(population=12, parents=6, mutations=3, crossovers=3, iterations=4, seed=3)
    base.update(kw)
    return ropescale.SearchParams(**base)


def fitness(table):
    f = table.factors
    target = np.where(np.arange(len(f)) < 10, 8.0 ** (np.arange(len(f)) / 10), 8.0 + 0.1 * np.arange(len(f)))
    return float(np.abs(np.log(f / target)).sum())


def test_ask_tell_equals_run_bit_for_bit():
    reference = ropescale.EvolutionSearch(space(), params()).run(fitness)
    search = ropescale.EvolutionSearch(space(), params())
    search.start()
    while True:
        batch = search.ask()
        if not batch:
            break
        # answered in reverse order, one at a time
        for c in reversed(batch):
            search.tell([c.id], [fitness(c.table)])
    r = search.result()
    assert search.finished and r.stop_reason == "completed"
    assert r.state.to_json() == reference.state.to_json()
    assert r.best_loss == reference.best_loss
    assert r.evaluations == 12 + 4 * 6


def test_threaded_run_with_a_python_fitness_is_identical():
    reference = ropescale.EvolutionSearch(space(), params()).run(fitness)
    threaded = ropescale.EvolutionSearch(space(), params(threads=3, thread_safe=True)).run(fitness)
    assert threaded.state.to_json() == reference.state.to_json()


def test_resume_mid_batch_through_a_checkpoint_file(tmp_path):
    reference = ropescale.EvolutionSearch(space(), params()).run(fitness)
    first = ropescale.EvolutionSearch(space(), params())
    for c in first.ask():
        first.tell([c.id], [fitness(c.table)])
    batch = first.ask()
    first.tell([batch[2].id], [fitness(batch[2].table)])
    path = tmp_path / "ckpt.json"
    first.state().save(str(path))
    text = json.loads(path.read_text())
    assert text["format"] == "ropescale.search_checkpoint" and text["version"] == 2
    assert len(text["pending"]) == len(batch) and "loss" in text["pending"][2]
    state = ropescale.load_search_checkpoint(str(path))
    assert state.pending[2][1] == fitness(batch[2].table) and state.pending[0][1] is None
    second = ropescale.EvolutionSearch(space(), params())
    second.restore(state)
    rest = second.ask()
    assert [c.id for c in rest] == [c.id for c in batch if c.id != batch[2].id]
    result = second.resume(state, fitness)
    assert result.state.to_json() == reference.state.to_json()


def test_resume_refuses_another_search_naming_the_field(tmp_path):
    r = ropescale.EvolutionSearch(space(), params(iterations=1)).run(fitness)
    path = tmp_path / "c.json"
    r.state.save(str(path))
    state = ropescale.SearchState.load(str(path))
    other = space()
    other.step = 0.02
    with pytest.raises(ropescale.Error, match=r"checkpoint space = \"step \(0.01"):
        ropescale.EvolutionSearch(other, params(iterations=1)).restore(state)
    with pytest.raises(ropescale.Error, match=r"checkpoint params = \"seed \(3 vs 4\)"):
        ropescale.EvolutionSearch(space(), params(iterations=1, seed=4)).restore(state)
    path.write_text(path.read_text()[:200])
    with pytest.raises(ropescale.Error, match="not valid JSON"):
        ropescale.load_search_checkpoint(str(path))


def test_bad_answers_are_refused_by_name():
    search = ropescale.EvolutionSearch(space(), params())
    with pytest.raises(ropescale.Error, match="call ask"):
        search.tell([0], [1.0])
    batch = search.ask()
    with pytest.raises(ropescale.Error, match=r"losses.size\(\) = 1: must equal ids.size\(\) = 2"):
        search.tell([0, 1], [1.0])
    with pytest.raises(ropescale.Error, match=r"losses.size\(\) = 3"):
        search.tell([1.0, 2.0, 3.0])
    with pytest.raises(ropescale.Error, match=r"ids\[0\] = 99: is not a candidate"):
        search.tell([99], [1.0])
    with pytest.raises(ropescale.Error, match=r"ids\[1\] = 4: already has a loss"):
        search.tell([4, 4], [1.0, 2.0])
    assert all(loss is None for _, loss in search.state().pending)
    search.tell([4], [float("nan")])
    with pytest.raises(ropescale.Error, match="second answer"):
        search.tell([4], [1.0])
    assert search.state().pending[4][1] == math.inf  # non-finite counts as +inf
    ids = [c.id for c in batch if c.id != 4]
    search.tell(ids, [fitness(c.table) for c in batch if c.id != 4])
    assert search.state().evaluations == len(batch)


def test_fitness_errors_propagate_and_params_are_checked():
    def broken(table):
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        ropescale.EvolutionSearch(space(), params()).run(broken)
    with pytest.raises(ropescale.Error, match="params.parents"):
        ropescale.SearchParams(population=4, parents=8)
    with pytest.raises(ropescale.Error, match="unknown field"):
        ropescale.SearchParams(populaton=4)
    with pytest.raises(ropescale.Error, match="monotonicity"):
        s = space()
        s.monotonicity = "sideways"


def test_result_exports_an_hf_config_that_reads_back():
    r = ropescale.EvolutionSearch(space(), params(iterations=2)).run(fitness)
    cfg = r.to_hf_config()
    assert cfg["rope_scaling"]["rope_type"] == "longrope"
    full = dict(cfg, hidden_size=64 * 4, num_attention_heads=4)
    back = ropescale.load_hf_config(full)
    long = back.table_for(r.target_length)
    np.testing.assert_allclose(long.factors, r.table.factors, rtol=1e-15)
    assert long.attention_factor == pytest.approx(r.table.attention_factor, rel=1e-15)
    assert "SearchSpace(" in repr(space()) and "seed=3" in repr(params())


def test_the_stub_names_every_public_name():
    import pathlib
    import re

    stub = (pathlib.Path(__file__).resolve().parents[1] / "ropescale" / "__init__.pyi").read_text()
    declared = set(re.findall(r"^(?:class|def) (\w+)", stub, re.M)) | {"__version__"}
    public = {n for n in ropescale.__all__}
    assert public <= declared, public - declared
