"""kktsolver: compute, certify and compare KKT points of the max-margin problem for two-layer ReLU nets.

(P)  minimise 1/2 ||theta||^2  s.t.  y_i N_theta(x_i) >= 1,  N_theta(x) = sum_j v_j relu(<w_j, x> + b_j).
"""

from .data import Dataset, DatasetError, load_dataset, noisy_constant, noisy_constant_1d, save_dataset
from .errors import InputError, KKTSolverError, SolverError
from .network import NetworkError, ReLUNetwork, load_network, save_network

__version__ = "0.1.0"

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
    "save_dataset",
    "save_network",
]
