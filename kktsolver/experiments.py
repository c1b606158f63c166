"""The reproduction sweep engine: a TOML grid expands into units of work, run and stored resumably.

A unit is a pure function of its configuration (a dict); executors only move configurations out and
:class:`~kktsolver.store.UnitRecord` results back, and the driver alone writes the store.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .data import Dataset, noisy_constant_1d, positive_int
from .errors import InputError, KKTSolverError, check_tolerances
from .store import ResultsStore, UnitRecord

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "SweepConfig",
    "SweepSummary",
    "UNIT_VERSION",
    "METHODS",
    "register_method",
    "load_config",
    "expand_units",
    "unit_key",
    "instance_key",
    "instance_dataset",
    "execute_unit",
    "run_sweep",
]

# Bumped whenever what a unit computes changes: old rows then no longer match and are recomputed.
UNIT_VERSION = 1

EXECUTORS = ("process", "serial", "dask")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep grid (see ``data/reproduce.toml`` for the documented format).

    Attributes
    ----------
    name : str
        Where the grid came from (file name).
    raw : dict
        The TOML content, kept verbatim so that the report can print it.
    """

    name: str
    raw: dict[str, Any]

    @property
    def interval(self) -> tuple[float, float]:
        """Support [a, b] of the uniform input distribution."""
        a, b = self.raw.get("setting", {}).get("interval", [0.0, 1.0])
        return float(a), float(b)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"name": self.name, **self.raw}


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{where}: invalid TOML ({e})") from None


def load_config(source: str | Path | None = None, quick: bool = False) -> SweepConfig:
    """Read a sweep grid: a TOML file path, or the embedded default (``quick`` picks the tiny grid).

    The embedded grids live in the package data (``kktsolver._data``), so they work after a plain
    ``pip install``.
    """
    if source is None:
        name = "reproduce-quick.toml" if quick else "reproduce.toml"
        text = resources.files("kktsolver._data").joinpath(name).read_text()
        raw = _read_toml(text, f"embedded {name}")
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such grid file")
        name = path.name
        raw = _read_toml(path.read_text(), str(path))
    cfg = SweepConfig(name, raw)
    expand_units(cfg)  # validate now, with errors naming the file
    return cfg


def _list(section: dict[str, Any], key: str, where: str, kind: type, default: Any = None) -> list:
    val = section.get(key, default)
    if val is None:
        raise InputError(f"{where}: missing key {key!r}")
    if not isinstance(val, list):
        val = [val]
    try:
        out = [kind(v) for v in val]
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key} must be a list of {kind.__name__}, got {val!r}") from None
    if not out:
        raise InputError(f"{where}: {key} is empty")
    return out


def _seeds(section: dict[str, Any], where: str) -> list[int]:
    s = section.get("seeds", 1)
    if isinstance(s, int):
        if s < 1:
            raise InputError(f"{where}: seeds must be >= 1, got {s}")
        return list(range(s))
    return _list(section, "seeds", where, int)


def _check_ps(ps: list[float], where: str) -> list[float]:
    for p in ps:
        if not 0.0 < p < 0.5:
            raise InputError(f"{where}: every p must lie in (0, 1/2), got {p}")
    return ps


def _check_ms(ms: list[int], where: str) -> list[int]:
    for m in ms:
        if m < 1:
            raise InputError(f"{where}: every m must be >= 1, got {m}")
    return ms


def _time_budget(section: dict[str, Any], where: str) -> float | None:
    """The optional ``time_budget`` (seconds, > 0) of a grid section, or None."""
    cap = section.get("time_budget")
    if cap is not None:
        check_tolerances(where, {"time_budget": cap}, positive=True)
        cap = float(cap)
    return cap


def expand_units(config: SweepConfig) -> list[dict[str, Any]]:
    """The grid as a list of unit configurations (plain dicts), in a deterministic order.

    One unit per (instance, method[, strategy or target]); an instance is (m, p, seed) in the seed
    setting x ~ U[a, b], f* = +1. Each of the sections ``[global]``, ``[sample]``, ``[extreme]``
    and ``[enumerate]`` that is present switches its method on (``enabled = false`` switches it
    off). The enumeration runs on its own small-m grid (``[enumerate] m``, ``seeds``; p from
    ``[grid]`` unless given).
    """
    raw, where = config.raw, config.name
    grid = raw.get("grid")
    if not isinstance(grid, dict):
        raise InputError(f"{where}: missing [grid] section")
    ps = _check_ps(_list(grid, "p", f"{where} [grid]", float), f"{where} [grid]")
    ms = _check_ms(_list(grid, "m", f"{where} [grid]", int), f"{where} [grid]")
    seeds = _seeds(grid, f"{where} [grid]")
    a, b = config.interval
    if not a < b:
        raise InputError(f"{where} [setting]: interval must satisfy a < b, got {[a, b]}")
    known = {"setting", "grid", "global", "sample", "extreme", "enumerate", "report", "custom"}
    unknown = set(raw) - known
    if unknown:
        raise InputError(f"{where}: unknown section(s) {sorted(unknown)}; known: {sorted(known)}")

    def base(method: str, m: int, p: float, seed: int, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "method": method,
            "m": m,
            "p": p,
            "seed": seed,
            "interval": [a, b],
            "params": params,
            "version": UNIT_VERSION,
        }

    units: list[dict[str, Any]] = []
    instances = [(m, p, s) for m in ms for p in ps for s in seeds]
    sec = raw.get("global", {})
    if sec.get("enabled", True) and "global" in raw:
        params = {"solver": str(sec.get("solver", "CLARABEL"))}
        units += [base("global", m, p, s, params) for m, p, s in instances]
    sec = raw.get("sample", {})
    if sec.get("enabled", True) and "sample" in raw:
        w = f"{where} [sample]"
        strategies = _list(sec, "strategies", w, str)
        n = int(sec.get("n", 10))
        attempts = int(sec.get("attempts", 10 * n))
        width = sec.get("width", "own")
        time_budget = _time_budget(sec, w)
        if width != "own" and not (isinstance(width, int) and width >= 1):
            raise InputError(f'{w}: width must be "own" or a positive integer, got {width!r}')
        for m, p, s in instances:
            for st in strategies:
                params = {"strategy": st, "n": n, "attempts": attempts, "width": width}
                if time_budget is not None:
                    params["time_budget"] = time_budget
                units.append(base("sample", m, p, s, params))
    sec = raw.get("extreme", {})
    if sec.get("enabled", True) and "extreme" in raw:
        w = f"{where} [extreme]"
        targets = _list(sec, "targets", w, str, ["max_error", "min_error"])
        for t in targets:
            if t not in ("max_error", "min_error"):
                raise InputError(f"{w}: target must be max_error or min_error, got {t!r}")
        if "budget" in sec:
            raise InputError(
                f"{w}: 'budget' was replaced by 'attempts' (sampling attempts, reproducible) and "
                "an optional 'time_budget' (seconds)"
            )
        attempts = positive_int(sec.get("attempts", 30), f"{w} attempts")
        cap = _time_budget(sec, w)
        extra = {"attempts": attempts} | ({} if cap is None else {"time_budget": cap})
        for m, p, s in instances:
            for t in targets:
                units.append(base("extreme", m, p, s, {"target": t, **extra}))
    sec = raw.get("enumerate", {})
    if sec.get("enabled", True) and "enumerate" in raw:
        w = f"{where} [enumerate]"
        ems = _check_ms(_list(sec, "m", w, int), w)
        eps = _check_ps(_list(sec, "p", w, float, ps), w)
        eseeds = _seeds(sec, w)
        params = {"time_budget": sec.get("time_budget")}
        units += [base("enumerate", m, p, s, params) for m in ems for p in eps for s in eseeds]
    sec = raw.get("custom", {})
    if sec:
        # methods registered by code (tests, extensions): [custom] method = "name", params = {...}
        name = str(sec.get("method", ""))
        if name not in METHODS:
            raise InputError(f"{where} [custom]: unknown method {name!r}; known: {sorted(METHODS)}")
        units += [base(name, m, p, s, dict(sec.get("params", {}))) for m, p, s in instances]
    if not units:
        raise InputError(f"{where}: the grid defines no units (every method disabled?)")
    return units


def _sha(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def unit_key(config: dict[str, Any]) -> str:
    """Hash of the unit's canonical configuration (sorted-key JSON): equal configs, equal keys."""
    return _sha(config)


def instance_key(config: dict[str, Any]) -> str:
    """Hash of the dataset part of a unit configuration (m, p, seed, interval)."""
    return _sha({k: config[k] for k in ("m", "p", "seed", "interval")})


def instance_dataset(config: dict[str, Any]) -> Dataset:
    """The dataset of a unit: ``noisy_constant_1d(m, p, seed, interval)``.

    The same seed at different p draws the same x and the same uniforms u_i, with y_i = -1 iff
    u_i < p: the noisy sets are nested in p (common random numbers), which steadies the slope fits.
    """
    return noisy_constant_1d(config["m"], config["p"], config["seed"], tuple(config["interval"]))


# --------------------------------------------------------------------------- methods (units)

MethodFn = Callable[[Dataset, dict[str, Any], dict[str, Any]], list[dict[str, Any]]]
METHODS: dict[str, MethodFn] = {}


def register_method(name: str, fn: MethodFn) -> None:
    """Register ``fn(dataset, params, config) -> list of row dicts`` as a unit method.

    Process-pool workers are forked after registration and inherit it; a Dask worker in another
    process needs the registering module imported there too.
    """
    METHODS[name] = fn


def _derived_seed(config: dict[str, Any]) -> int:
    """Seed for the unit's own randomness, from its key (reproducible, distinct per unit)."""
    return int(unit_key(config)[:8], 16)


def _network_row(net: Any) -> str | None:
    return None if net is None else json.dumps(net.to_dict())


def _first(obj: Any, *names: str) -> Any:
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    return None


def _kkt_row(cls: Any) -> dict[str, Any]:
    """Columns of a certified KKT class (``enumeration.KKTClass``)."""
    cert = cls.certificate
    return {
        "verdict": cls.verdict,
        "clean_error": cls.clean_error,
        "objective": cls.objective,
        "lower_bound": cert.lower_bound,
        "relative_gap": cert.relative_gap,
        "min_margin": cert.min_margin,
        "n_neurons": cls.n_neurons,
        "width": cert.width,
        # numbered per search (per unit), so only comparable within one unit
        "function_id": str(cls.function_id),
        "network": _network_row(cls.network),
        "extra": {
            "source": cls.source,
            "class_id": cls.class_id,
            "kinks": list(cls.kinks),
            "stationarity_residual": cert.stationarity_residual,
        },
    }


def _width(params: dict[str, Any]) -> int | None:
    w = params.get("width", "own")
    return None if w == "own" else int(w)


def _method_global(ds: Dataset, params: dict[str, Any], config: dict[str, Any]) -> list[dict]:
    """The global solver's network, with an independent certificate (its verdict is the row's)."""
    from .certify import certify
    from .global_solver import solve_global

    res = solve_global(ds, solver=params.get("solver", "CLARABEL"))
    net = res.network
    cert = certify(net, ds)
    return [
        {
            "verdict": cert.verdict,
            "clean_error": res.clean_error,
            "objective": res.objective,
            "lower_bound": res.lower_bound,
            "relative_gap": res.relative_gap,
            "min_margin": res.min_margin,
            "n_neurons": res.n_neurons,
            "width": net.n,
            "network": _network_row(net),
            "extra": {
                "status": res.status,
                "solver": res.solver,
                "solver_seconds": res.seconds,
                "certificate_gap": cert.relative_gap,
                "stationarity_residual": cert.stationarity_residual,
                "certificate_seconds": cert.seconds,
            },
        }
    ]


def _enumeration():
    """The enumeration/sampling module (issue 5); named ``enumeration`` (or ``enumerate``)."""
    import importlib

    try:
        return importlib.import_module(".enumeration", __package__)
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.enumeration":
            raise
        return importlib.import_module(".enumerate", __package__)


def _method_sample(ds: Dataset, params: dict[str, Any], config: dict[str, Any]) -> list[dict]:
    """Certified KKT classes from one sampling strategy, bounded by attempts (deterministic)
    and, if the grid sets ``time_budget``, by seconds (rows record what stopped the search).
    """
    stream = _enumeration().sample_kkt(
        ds,
        params["n"],
        params["strategy"],
        seed=_derived_seed(config),
        max_attempts=params["attempts"],
        time_budget=params.get("time_budget"),
        width=_width(params),
        progress=False,
    )
    rows = [_kkt_row(c) for c in stream]
    res = stream.result
    for r in rows:
        r["extra"]["stopped"] = res.stopped
        r["extra"]["attempts"] = res.counters.get("attempts")
    return rows


def _method_extreme(ds: Dataset, params: dict[str, Any], config: dict[str, Any]) -> list[dict]:
    """The KKT class of largest / smallest clean error found in ``attempts`` sampling attempts."""
    res = _enumeration().extreme_kkt(
        ds,
        params["target"],
        int(params["attempts"]),
        time_budget=params.get("time_budget"),
        seed=_derived_seed(config),
        progress=False,
    )
    if res.best is None:
        return []
    row = _kkt_row(res.best)
    row["complete"] = res.exact
    row["extra"] = {
        **row["extra"],
        "exact": res.exact,
        "search": res.search,
        "n_classes": res.n_classes,
        "effort": res.effort,
        "clean_error_range": res.clean_error_range,
        "seconds": res.seconds,
    }
    return [row]


def _method_enumerate(ds: Dataset, params: dict[str, Any], config: dict[str, Any]) -> list[dict]:
    """Every vertex KKT class of a small dataset (``complete`` says whether the search finished)."""
    res = (
        _enumeration()
        .enumerate_kkt(ds, time_budget=params.get("time_budget"), progress=False)
        .collect()
    )
    rows = [_kkt_row(c) for c in res.classes]
    for r in rows:
        r["complete"] = res.complete
        r["extra"]["stopped"] = res.stopped
    return rows


register_method("global", _method_global)
register_method("sample", _method_sample)
register_method("extreme", _method_extreme)
register_method("enumerate", _method_enumerate)


def execute_unit(config: dict[str, Any]) -> UnitRecord:
    """Run one unit: build its dataset, call its method, return the rows (never raises on bad luck).

    A solver failure or any other exception becomes a ``failed`` record carrying the error text, so
    one bad instance does not stop a sweep; the store keeps failures apart and a rerun retries them.
    """
    key = unit_key(config)
    t0 = time.perf_counter()
    method = config["method"]
    try:
        if method not in METHODS:
            raise InputError(f"unknown unit method {method!r}; known: {sorted(METHODS)}")
        ds = instance_dataset(config)
        rows = METHODS[method](ds, config["params"], config)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - recorded, reported, retried on rerun
        kind = "solver" if isinstance(e, KKTSolverError) else "bug"
        err = f"{kind}: {type(e).__name__}: {e}"
        if kind == "bug":
            err += "\n" + traceback.format_exc(limit=8)
        return UnitRecord(key, method, config, "failed", 0, time.perf_counter() - t0, err)
    secs = time.perf_counter() - t0
    ikey = instance_key(config)
    params = config["params"]
    strategy = params.get("strategy") or params.get("target")
    n_neg = int((ds.y < 0).sum())
    full = []
    for i, r in enumerate(rows):
        full.append(
            {
                **r,
                "row_key": _sha([key, i]),
                "unit_key": key,
                "instance_key": ikey,
                "idx": i,
                "method": method,
                "strategy": strategy,
                "m": config["m"],
                "p": config["p"],
                "seed": config["seed"],
                "interval_a": config["interval"][0],
                "interval_b": config["interval"][1],
                "n_negative": n_neg,
                "unit_seconds": secs,
            }
        )
    return UnitRecord(key, method, config, "done", len(full), secs, None, full)


# --------------------------------------------------------------------------- executors


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: units in the grid, skipped (already stored), run, failed; rows added."""

    n_units: int
    n_skipped: int
    n_done: int
    n_failed: int
    n_rows_added: int
    seconds: float
    executor: str
    jobs: int
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; workers ignore it and the driver terminates them,
    # so an interrupt loses only the units in flight and prints one message, not one per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_serial(todo: Sequence[dict], fn: Callable) -> Iterator[UnitRecord]:
    for cfg in todo:
        yield fn(cfg)


def _run_process(todo: Sequence[dict], fn: Callable, jobs: int) -> Iterator[UnitRecord]:
    # The pool is created here, before the caller starts its progress bar: forking while tqdm's
    # monitor thread runs could copy a held lock into the children.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ctx.Pool(jobs, initializer=_worker_init)

    def results() -> Iterator[UnitRecord]:
        try:
            yield from pool.imap_unordered(fn, todo, chunksize=1)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()

    return results()


def _run_dask(todo: Sequence[dict], fn: Callable, scheduler: Any) -> Iterator[UnitRecord]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InputError(
            "--executor dask needs dask.distributed: pip install 'kktsolver[dask]'"
        ) from None
    own = isinstance(scheduler, str)
    if own:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
    elif scheduler is None:
        raise InputError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    else:
        client = scheduler  # an existing distributed.Client (tests, notebooks)
    # explicit keys: the same unit submitted twice is computed once by the cluster
    futures = client.map(fn, todo, key=[f"kktsolver-unit-{unit_key(c)}" for c in todo], pure=False)
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.cancel(futures)
        if own:
            client.close()


class _InterruptGuard:
    """Records that SIGINT arrived (then raises KeyboardInterrupt as usual) while installed."""

    def __init__(self) -> None:
        self.fired = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, self._handler)
            self._old = old if old is not None else signal.default_int_handler

    def _handler(self, signum: int, frame: Any) -> None:
        self.fired = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def run_sweep(
    units: Iterable[dict[str, Any]],
    store: ResultsStore,
    executor: str = "process",
    jobs: int | None = None,
    scheduler: Any = None,
    progress: bool = True,
    fn: Callable[[dict[str, Any]], UnitRecord] = execute_unit,
) -> SweepSummary:
    """Run every unit not yet in ``store``, writing each result from the driver as it arrives.

    Parameters
    ----------
    units : iterable of dict
        Unit configurations (:func:`expand_units`).
    store : ResultsStore
        Where results go; units already stored as done are skipped (resume).
    executor : {"process", "serial", "dask"}
        A local process pool of ``jobs`` workers (``jobs = 1`` runs in this process), or an existing
        dask.distributed cluster at ``scheduler`` (an address, or a ``distributed.Client``).
    progress : bool
        tqdm bar on stderr (shown only on a terminal).
    fn : callable
        The unit runner, ``execute_unit`` unless testing the engine itself.

    Notes
    -----
    Ctrl-C (KeyboardInterrupt) terminates the workers and propagates; every unit written before it
    is complete in the store and the rerun continues from there.
    """
    from tqdm import tqdm

    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    units = list(units)
    jobs = int(jobs or os.cpu_count() or 1)
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    t0 = time.perf_counter()
    done = store.done_keys()
    seen: set[str] = set()
    todo = []
    for u in units:
        k = unit_key(u)
        if k not in done and k not in seen:
            seen.add(k)
            todo.append(u)
    n_skipped = len(units) - len(todo)
    if executor == "dask":
        results = _run_dask(todo, fn, scheduler)
    elif executor == "serial" or jobs == 1 or len(todo) <= 1:
        results = _run_serial(todo, fn)
    else:
        results = _run_process(todo, fn, min(jobs, len(todo)))
    n_done = n_failed = n_rows = 0
    failures: list[str] = []
    bar = tqdm(total=len(todo), desc="units", unit="unit", disable=None if progress else True)
    guard = _InterruptGuard()
    try:
        for rec in results:
            if guard.fired:
                # Ctrl-C arrived while this unit ran, and something inside it swallowed the
                # KeyboardInterrupt (a solver may stop early and return): never store that result
                raise KeyboardInterrupt
            n_rows += store.write_unit(rec)
            if rec.status == "done":
                n_done += 1
            else:
                n_failed += 1
                failures.append(
                    f"{rec.method} m={rec.config['m']} p={rec.config['p']} "
                    f"seed={rec.config['seed']}: {rec.error.splitlines()[0]}"
                )
            bar.update()
    finally:
        guard.restore()
        bar.close()
        if hasattr(results, "close"):
            results.close()  # runs the executor's cleanup (terminate the pool / cancel futures)
    return SweepSummary(
        n_units=len(units),
        n_skipped=n_skipped,
        n_done=n_done,
        n_failed=n_failed,
        n_rows_added=n_rows,
        seconds=time.perf_counter() - t0,
        executor=executor if executor == "dask" or jobs > 1 else "serial",
        jobs=jobs,
        failures=tuple(failures),
    )
