"""kktsolver: compute, certify and compare KKT points of the max-margin problem for two-layer ReLU
networks.

(P)  minimise 1/2 ||theta||^2  s.t.  y_i N(x_i) >= 1,  N(x) = sum_j v_j relu(<w_j, x> + b_j).
"""

from __future__ import annotations

from .certify import Certificate, CertTolerances, certify
from .clean_error import MonteCarloEstimate, clean_error, clean_error_mc
from .data import (
    Dataset,
    DatasetError,
    clustered_1d,
    load_dataset,
    noisy_constant,
    noisy_constant_1d,
    save_dataset,
)
from .enumeration import EnumerationResult, KKTClass, enumerate_kkt, extreme_kkt, sample_kkt
from .errors import InputError, KKTSolverError, SolverError
from .experiments import run_sweep
from .global_solver import AUTO_SCALE_M, GlobalResult, GlobalTolerances, solve_global
from .network import NetworkError, ReLUNetwork, load_network, save_network
from .scale import ScaleTolerances, solve_global_large
from .store import ResultsStore
from .subproblem import ConvexSubproblem, SubproblemResult, solve_subproblem

__version__ = "0.1.0"

# The gradient-descent baseline keeps its namespace: kktsolver.gd.train, kktsolver.gd.limit_point.

__all__ = [
    "Dataset",
    "DatasetError",
    "InputError",
    "KKTSolverError",
    "NetworkError",
    "ReLUNetwork",
    "SolverError",
    "load_dataset",
    "load_network",
    "noisy_constant",
    "noisy_constant_1d",
    "clustered_1d",
    "save_dataset",
    "save_network",
    "clean_error",
    "clean_error_mc",
    "MonteCarloEstimate",
    "ConvexSubproblem",
    "SubproblemResult",
    "solve_subproblem",
    "solve_global",
    "GlobalResult",
    "GlobalTolerances",
    "AUTO_SCALE_M",
    "solve_global_large",
    "ScaleTolerances",
    "certify",
    "Certificate",
    "CertTolerances",
    "enumerate_kkt",
    "sample_kkt",
    "extreme_kkt",
    "KKTClass",
    "EnumerationResult",
    "run_sweep",
    "ResultsStore",
]
