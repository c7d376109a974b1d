# Type stub of the ropescale module (the pybind11 extension ropescale._ropescale).
from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

Positions = Union[Sequence[int], npt.NDArray[np.integer]]
Tensor = Any  # a numpy array or a torch CPU tensor, rotated in place

class Error(ValueError): ...

class RopeSpec:
    def __init__(self, head_dim: int = 128, rotary_dim: int = -1, rope_theta: float = 10000.0,
                 original_max_position: int = 4096, freq_dim: int = 0) -> None: ...
    head_dim: int
    rotary_dim: int
    rope_theta: float
    original_max_position: int
    freq_dim: int
    @property
    def pairs(self) -> int: ...
    @property
    def frequency_dim(self) -> int: ...
    @property
    def base_inv_freq(self) -> npt.NDArray[np.float64]: ...

class FactorTable:
    def __init__(self, factors: Sequence[float], attention_factor: float = 1.0,
                 method: str = "custom") -> None: ...
    @property
    def factors(self) -> npt.NDArray[np.float64]: ...
    @property
    def attention_factor(self) -> float: ...
    @property
    def method(self) -> str: ...
    @property
    def pairs(self) -> int: ...
    def inv_freq(self, spec: RopeSpec) -> npt.NDArray[np.float64]: ...

class Table:
    def __init__(self, spec: RopeSpec, factors: FactorTable,
                 pair_layout: str = "half_split") -> None: ...
    spec: RopeSpec
    factor_table: FactorTable
    inv_freq: npt.NDArray[np.float64]
    factors: npt.NDArray[np.float64]
    attention_factor: float
    method: str
    head_dim: int
    rotary_dim: int
    frequency_dim: int
    pair_layout: str
    max_position: int
    def cos_sin(self, positions: Positions, dtype: Any = np.float32,
                duplicate: bool = False) -> Tuple[np.ndarray, np.ndarray]: ...
    def apply(self, x: Tensor, positions: Positions, direction: str = "forward") -> None: ...

def rerotate_keys(from_table: Table, to_table: Table, keys: Tensor, positions: Positions) -> None: ...

class RopeConfig:
    rope_type: str
    spec: RopeSpec
    max_position_embeddings: int
    scale: float
    mrope_section: List[int]
    interleaved_pairs: bool
    pair_layout: str
    def table_for(self, seq_len: int = 0) -> Table: ...
    def window_for(self, seq_len: int) -> Optional[str]: ...
    def to_rope_scaling(self) -> Optional[Dict[str, Any]]: ...
    def to_hf_config(self) -> Dict[str, Any]: ...

class ModelRope:
    kinds: List[Tuple[str, RopeConfig]]
    layer_types: List[str]
    layer_kind: List[int]
    num_layers: int
    uniform: bool
    def layer(self, layer: int) -> RopeConfig: ...
    def table_for(self, layer: int, seq_len: int = 0) -> Table: ...

ConfigSource = Union[str, PathLike, Dict[str, Any]]

def load_hf_config(config: ConfigSource, yarn: str = "current",
                   default_rope_theta: Optional[float] = None) -> RopeConfig: ...
def load_hf_model(config: ConfigSource, yarn: str = "current",
                  default_rope_theta: Optional[float] = None) -> ModelRope: ...

class Genome:
    critical_pair: int
    steps: List[int]

class SearchSpace:
    @staticmethod
    def longrope2(spec: RopeSpec, target_length: int) -> SearchSpace: ...
    @staticmethod
    def longrope(spec: RopeSpec, target_length: int) -> SearchSpace: ...
    spec: RopeSpec
    scale: float
    method: str
    critical_lower: int
    critical_upper: int
    lower_bound: float
    upper_bound: float
    step: float
    monotonicity: str
    attention_factor: float
    def genome_table(self, genome: Genome) -> FactorTable: ...

class SearchParams:
    def __init__(self, **fields: Any) -> None: ...
    population: int
    parents: int
    mutations: int
    crossovers: int
    iterations: int
    mutation_prob: float
    crossover_tries: int
    critical_mutation_prob: float
    seed: int
    threads: int
    thread_safe: bool
    max_evaluations: int
    max_seconds: float

class Candidate:
    id: int
    genome: Genome
    table: FactorTable

class SearchState:
    space: SearchSpace
    params: SearchParams
    iteration: int
    evaluations: int
    pending: List[Tuple[int, Optional[float]]]
    losses: List[float]
    def to_json(self) -> Dict[str, Any]: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str) -> SearchState: ...

class SearchResult:
    best: Genome
    best_loss: float
    table: FactorTable
    critical_pair: int
    spec: RopeSpec
    target_length: int
    iterations: int
    evaluations: int
    stop_reason: str
    state: SearchState
    def to_hf_config(self) -> Dict[str, Any]: ...

class EvolutionSearch:
    def __init__(self, space: SearchSpace, params: SearchParams) -> None: ...
    space: SearchSpace
    params: SearchParams
    finished: bool
    stop_reason: str
    def start(self, seeds: Sequence[Genome] = ...) -> None: ...
    def restore(self, state: SearchState) -> None: ...
    def ask(self) -> List[Candidate]: ...
    def tell(self, ids_or_losses: Sequence[Any], losses: Optional[Sequence[float]] = None) -> None: ...
    def state(self) -> SearchState: ...
    def result(self) -> SearchResult: ...
    def set_checkpoint_file(self, path: str) -> None: ...
    def run(self, fitness: Callable[[FactorTable], float],
            seeds: Sequence[Genome] = ...) -> SearchResult: ...
    def resume(self, state: SearchState, fitness: Callable[[FactorTable], float]) -> SearchResult: ...

def load_search_checkpoint(path: str) -> SearchState: ...
def critical_dims(spec: RopeSpec) -> Dict[str, Any]: ...
def analyze_table(spec: RopeSpec, target_length: int, table: FactorTable) -> Dict[str, Any]: ...
def rope_window(seq_len: int, original_max_position: int) -> str: ...
def pack_documents(lengths: Sequence[int], segment_length: int, original_max_position: int,
                   long_packing: str = "pack", long_mask: str = "full_causal") -> List[Dict[str, Any]]: ...
def make_needle_documents(haystack: Sequence[int], template: Dict[str, Sequence[int]],
                          digit_tokens: Sequence[int], digit_prefix: Sequence[int] = ...,
                          length: int = ..., count: int = 1, depth: float = 0.0, seed: int = 0,
                          random_offset: bool = True) -> List[Dict[str, Any]]: ...
def answer_nll(logits: npt.ArrayLike, tokens: Sequence[int], answer_mask: Sequence[bool],
               first_row: int = 0) -> float: ...
def perplexity(losses: Sequence[float]) -> float: ...
