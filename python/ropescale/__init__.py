"""ropescale: rotary position embedding tables, kernels and the LongRoPE2 factor search.

Every number comes from the C++ library (header-only, bound with pybind11); errors are
``ropescale.Error``, a ``ValueError`` carrying the library's message (argument, value, rule).

Quickstart::

    import ropescale, torch
    cfg = ropescale.load_hf_config("config.json")        # or a dict
    table = cfg.table_for(seq_len=8192)                   # HF's table for 8192 tokens
    cos, sin = table.cos_sin(range(8192), duplicate=True) # float32 numpy, [8192, rotary_dim]
    cos, sin = torch.from_numpy(cos), torch.from_numpy(sin)
"""

from ._ropescale import (  # noqa: F401
    Candidate,
    Error,
    EvolutionSearch,
    FactorTable,
    Genome,
    ModelRope,
    RopeConfig,
    RopeSpec,
    SearchParams,
    SearchResult,
    SearchSpace,
    SearchState,
    Table,
    __version__,
    analyze_table,
    answer_nll,
    critical_dims,
    load_hf_config,
    load_hf_model,
    load_search_checkpoint,
    make_needle_documents,
    pack_documents,
    perplexity,
    rerotate_keys,
    rope_window,
)

__all__ = [name for name in dir() if not name.startswith("_")]
