"""Tests of the GD baseline: exact gradients, margin monotonicity, the exact limit point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kktsolver.cli import main
from kktsolver.data import Dataset, save_dataset
from kktsolver.errors import InputError
from kktsolver.gd import aligned_angle, limit_point, loss_and_gradient, rescaled, train
from kktsolver.network import ReLUNetwork
from kktsolver.patterns import SortedSample, all_blocks


def _loss_only(theta: np.ndarray, n: int, d: int, dataset: Dataset, loss: str) -> float:
    return loss_and_gradient(ReLUNetwork.from_theta(theta, n, d), dataset, loss)[0]


def _direct_loss(net: ReLUNetwork, dataset: Dataset, loss: str) -> float:
    q = dataset.y * net(dataset.X)
    return float(np.mean(np.exp(-q) if loss == "exp" else np.log1p(np.exp(-q))))


@pytest.mark.parametrize("loss", ["exp", "logistic"])
@pytest.mark.parametrize("d", [1, 3])
def test_gradient_matches_central_differences(loss, d):
    rng = np.random.default_rng(7 + d)
    m, n = 12, 5
    X = rng.standard_normal((m, d))
    y = np.where(rng.random(m) < 0.3, -1, 1)
    ds = Dataset(X, y)
    net = ReLUNetwork(rng.standard_normal(n), rng.standard_normal((n, d)), rng.standard_normal(n))
    Z = net.preactivations(X)
    assert np.min(np.abs(Z)) > 1e-3  # away from kinks, so central differences are exact to O(h^2)
    value, grad = loss_and_gradient(net, ds, loss)
    assert value == pytest.approx(_direct_loss(net, ds, loss), rel=1e-12)
    th, h = net.theta, 1e-6
    fd = np.array(
        [
            (_loss_only(th + h * e, n, d, ds, loss) - _loss_only(th - h * e, n, d, ds, loss))
            / (2 * h)
            for e in np.eye(th.size)
        ]
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_losses_stay_finite_at_huge_margins():
    # margins ~ 1e4: e^{-q} underflows to 0, the log-domain loss must not
    ds = Dataset(np.array([0.2, 0.8]), np.array([1, 1]))
    net = ReLUNetwork([100.0], [[0.0]], [100.0])
    for loss in ("exp", "logistic"):
        tr = train(ds, 1, loss=loss, steps=0, residuals=False, clean=False)
        assert np.isfinite(tr.log_loss[0])
    from kktsolver.gd import _evaluate, _lift

    for loss in ("exp", "logistic"):
        ev = _evaluate(
            net.v, np.column_stack([net.W, net.b]), _lift(ds.X), ds.y.astype(float), loss, True
        )
        # exp: log L = -1e4 exactly; logistic: log(log1p(e^-q)) = -q to double precision
        assert ev.log_loss == pytest.approx(-1e4, rel=1e-12)
        assert np.all(np.isfinite(ev.grad_v)) and np.all(np.isfinite(ev.grad_U))


def test_normalized_margin_nondecreasing_late_exp_loss(three_point_v):
    # Lyu & Li: for the exp loss with a small enough step the (smoothed) normalised margin increases
    # once the data are separated. Tiny case, plain GD with a small step.
    tr = train(
        three_point_v,
        6,
        loss="exp",
        lr=0.1,
        steps=8_000,
        seed=0,
        record_every=250,
        residuals=False,
        clean=False,
    )
    sep = np.flatnonzero(tr.normalized_margin > 0)
    assert sep.size and sep[0] < len(tr.steps) // 2, "GD should separate the V early"
    late = slice(len(tr.steps) // 2, None)
    gamma, smooth = tr.normalized_margin[late], tr.smoothed_margin[late]
    assert np.all(np.diff(smooth) >= -1e-12)
    assert np.all(np.diff(gamma) >= -1e-9 * gamma[:-1])
    assert gamma[-1] > gamma[0]  # and it actually moves
    # smoothed margin <= normalised margin (log sum e^{-q} >= -min q)
    assert np.all(tr.smoothed_margin[sep] <= tr.normalized_margin[sep] + 1e-15)


@pytest.fixture(scope="module")
def v_run():
    ds = Dataset(np.array([[0.1], [0.5], [0.9]]), np.array([1, -1, 1]), {"support": [0.0, 1.0]})
    tr = train(ds, 6, loss="exp", lr=0.1, steps=8_000, seed=0, normalized=True, record_every=800)
    return ds, tr, limit_point(tr)


def _cvxpy_cell_optimum(s: SortedSample, blocks: list) -> float:
    """min of (C_B) written directly in cvxpy from MATH.md section 3 (free blocks)."""
    import cvxpy as cp

    U = cp.Variable((len(blocks), 2))
    cons = []
    margin = [0] * s.m
    for k, blk in enumerate(blocks):
        act = np.arange(s.m)[blk.active(s.m)]
        inside = np.array([s.xt[i] for i in act])
        outside = np.array([s.xt[i] for i in range(s.m) if i not in act])
        cons += [inside @ U[k] >= 0] + ([outside @ U[k] <= 0] if len(outside) else [])
        for i in act:
            margin[i] = margin[i] + blk.sign * (s.xt[i] @ U[k])
    assert not any(isinstance(mg, int) for mg in margin), "a point no block covers"
    cons += [s.y[i] * margin[i] >= 1 for i in range(s.m)]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.norm(U, axis=1))), cons)
    prob.solve(solver="CLARABEL")
    return float(prob.value)


def test_limit_point_of_long_run_on_v_is_certified_global_optimum(v_run):
    ds, tr, lp = v_run
    assert lp.verdict == "global_min"
    # independent check of the optimum: the full convex program over every block, in cvxpy
    s = SortedSample.from_dataset(ds)
    value = _cvxpy_cell_optimum(s, all_blocks(s.m))
    assert lp.objective == pytest.approx(value, rel=1e-7)
    assert lp.certificate.stationarity_residual <= 1e-9
    # the GD direction is close to it and its rescaled objective is above it
    assert lp.gd_objective >= lp.objective * (1 - 1e-12)
    assert lp.angle < 0.2


@pytest.mark.parametrize("seed", [1, 2])
def test_solve_cell_matches_cvxpy_and_is_polished(seed):
    # a feasible block set: the support of the global optimum plus random extra free blocks
    from kktsolver.certify import certify
    from kktsolver.data import noisy_constant_1d
    from kktsolver.gd import CELL_GAP, solve_cell
    from kktsolver.global_solver import solve_global

    ds = noisy_constant_1d(12, 0.25, seed=seed)
    s = SortedSample.from_dataset(ds)
    pool = all_blocks(s.m)
    rng = np.random.default_rng(seed)
    extra = [pool[k] for k in rng.choice(len(pool), size=6, replace=False)]
    blocks = sorted(set(solve_global(ds).blocks) | set(extra))
    cell = solve_cell(s, blocks)
    assert cell.polished and cell.gap <= CELL_GAP
    assert np.sum(np.linalg.norm(cell.U, axis=1)) == pytest.approx(
        _cvxpy_cell_optimum(s, blocks), rel=1e-7
    )
    assert min(cell.network.margins(ds.X, ds.y)) >= 1 - 1e-12
    # MATH.md F2: the optimum of (C_B) is a KKT point of (P)
    assert certify(cell.network, ds).stationarity_residual <= 1e-9


def test_angle_to_limit_decreases_along_the_run(v_run):
    _, tr, lp = v_run
    hist = lp.angle_history
    assert hist.shape == tr.steps.shape
    sep = np.flatnonzero(tr.normalized_margin > 0)[0]
    late = hist[sep:]
    assert np.all(np.diff(late) <= 1e-12)
    assert late[-1] < 0.5 * late[0]
    assert hist[-1] == pytest.approx(lp.angle)
    # and the rescaled objective decreases towards the exact optimum
    assert tr.objective[-1] < tr.objective[sep]


def test_aligned_angle_handles_permutation_and_split_neurons(three_point_v):
    # the exact point, then the same function with neurons permuted and one neuron split in two
    # parallel
    # copies (mass 1/4 and 3/4), padded with a zero neuron: the angle must be 0
    from kktsolver.gd import _align
    from kktsolver.patterns import Block, block_of_neuron, network_from_blocks

    s = SortedSample.from_dataset(three_point_v)
    # the optimum of the V (MATH.md section 3 map): a negative all-active neuron, two kinks on x =
    # 0.5
    U = np.array([[0.4, 0.8], [5.4, -2.7], [-4.6, 2.3]])
    signs = [-1, 1, 1]
    blocks = [block_of_neuron(u[0], u[1], sg, s) for u, sg in zip(U, signs, strict=True)]
    assert blocks[0] == Block("all", 0, -1) and blocks[1].pinned and blocks[2].pinned
    base = network_from_blocks(blocks, U)
    v, W, b = base.v, base.W[:, 0], base.b
    c = np.sqrt([0.25, 0.75])
    net = ReLUNetwork(
        [v[2], c[0] * v[0], 0.0, v[1], c[1] * v[0]],
        [W[2], c[0] * W[0], 0.0, W[1], c[1] * W[0]],
        [b[2], c[0] * b[0], 0.0, b[1], c[1] * b[0]],
    )
    nb = [
        block_of_neuron(float(w), float(bb), float(vv), s)
        for vv, w, bb in zip(net.v, net.W[:, 0], net.b, strict=True)
    ]
    al = _align(net, nb, s, base, 1e-6)
    assert aligned_angle(net, al) == pytest.approx(0.0, abs=1e-7)
    # neuron 3 (kink on x = 0.5) moved 1e-7 to either side: its block is then a FREE block of an
    # adjacent cell, whose closed cone still holds the exact neuron, so it is still matched
    for shift in (-1e-7, 1e-7):
        moved = ReLUNetwork(net.v, net.W, net.b + shift * np.eye(5)[3])
        nb_m = [
            block_of_neuron(float(w), float(bb), float(vv), s)
            for vv, w, bb in zip(moved.v, moved.W[:, 0], moved.b, strict=True)
        ]
        assert not nb_m[3].pinned
        assert aligned_angle(moved, _align(moved, nb_m, s, base, 1e-6)) < 1e-6
    # flipping the output sign of neuron 3 (block sign +1): it no longer matches its group
    net2 = ReLUNetwork(net.v * np.array([1, 1, 1, -1, 1]), net.W, net.b)
    a2 = aligned_angle(net2, al)
    T = np.column_stack([net.v, net.W, net.b])
    T2 = np.column_stack([net2.v, net2.W, net2.b])
    # balanced neuron: a = <(-v, w, b), (v, w, b)> = -v^2 + ||(w, b)||^2 = 0, so it adds nothing to
    # <theta, theta*> while ||theta|| and ||theta*|| are unchanged
    expected = np.arccos(
        (np.sum(T * T) - np.sum(T[3] ** 2)) / (np.linalg.norm(T2) * np.linalg.norm(T))
    )
    assert a2 == pytest.approx(expected, rel=1e-9)


def test_callback_stops_early_and_validation(three_point_v):
    seen = []

    def cb(step, net):
        seen.append(step)
        return step >= 300

    tr = train(
        three_point_v, 3, steps=10_000, record_every=100, callback=cb, residuals=False, clean=False
    )
    assert tr.stopped == "callback" and tr.steps[-1] == 300 and seen == [0, 100, 200, 300]
    assert tr.patterns.shape == (4, 3, 3)
    np.testing.assert_array_equal(tr.patterns[-1], tr.network.preactivations(three_point_v.X) > 0)
    with pytest.raises(InputError, match="loss"):
        train(three_point_v, 3, loss="hinge")
    with pytest.raises(InputError, match="width"):
        train(three_point_v, 0)
    with pytest.raises(InputError, match="separate"):
        limit_point(ReLUNetwork([0.0], [[1.0]], [0.0]), three_point_v)
    with pytest.raises(InputError, match="dataset must be a kktsolver.Dataset, got list"):
        train([[0.0], [1.0]], 3)
    with pytest.raises(InputError, match="dataset has input dimension d = 2"):
        loss_and_gradient(ReLUNetwork([1.0], [[1.0]], [0.0]), Dataset(np.eye(2), [1, 1]))


def test_cli_json(tmp_path, three_point_v, capsys):
    path = save_dataset(three_point_v, tmp_path / "v.csv")
    rc = main(
        [
            "gd",
            str(path),
            "--width",
            "6",
            "--steps",
            "3000",
            "--lr",
            "0.1",
            "--normalized",
            "--record-every",
            "1000",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    fin, lim = out["final"], out["limit_point"]
    assert fin["steps"] == 3000 and fin["normalized_margin"] > 0
    assert fin["objective"] >= lim["objective"] * (1 - 1e-9)
    net = ReLUNetwork.from_dict(lim["network"])
    assert net.objective() == pytest.approx(lim["objective"], rel=1e-9)
    assert min(net.margins(three_point_v.X, three_point_v.y)) == pytest.approx(1.0, abs=1e-9)
    assert main(["gd", str(path), "--width", "0", "--steps", "10"]) == 2


@pytest.mark.parametrize("rule", ["constant", "loss", "loss-log", "grad"])
def test_step_size_rules_take_the_documented_step(three_point_v, rule):
    # one step from the initialisation, against theta_0 - eta grad L written from the formulas
    lr = 0.05
    tr = train(three_point_v, 4, lr=lr, steps=1, record_every=1, normalized=rule, clean=False)
    net0 = tr.network_at(0)
    value, grad = loss_and_gradient(net0, three_point_v)
    eta = {
        "constant": lr,
        "loss": lr / value,
        "loss-log": lr / (value * max(1.0, np.log(1.0 / value))),
        "grad": lr / np.linalg.norm(grad),
    }[rule]
    np.testing.assert_allclose(tr.thetas[1], net0.theta - eta * grad, rtol=1e-12, atol=1e-15)
    if rule == "grad":  # a step of length lr
        assert np.linalg.norm(tr.thetas[1] - tr.thetas[0]) == pytest.approx(lr, rel=1e-12)
    assert tr.config["normalized"] == rule
    with pytest.raises(InputError, match="normalized"):
        train(three_point_v, 4, steps=1, normalized="lr/2")


def _doc_recipe() -> str:
    """The first python block after the PyTorch heading of docs/gd.md (the documented recipe)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "gd.md").read_text()
    section = text.split("### Certifying a network trained in PyTorch", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_pytorch_export_recipe(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_doc_recipe(), "docs/gd.md", "exec"), ns)  # the recipe exactly as documented
    model, data, net, lim = ns["model"], ns["data"], ns["net"], ns["lim"]
    first, last = model[0], model[2]
    assert (net.n, net.d) == (first.out_features, first.in_features)
    x = torch.tensor(data.X)
    y = torch.tensor(data.y, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x).squeeze(1).numpy()
    np.testing.assert_allclose(net(data.X), expected, rtol=1e-12, atol=1e-12)
    assert lim.certificate.stationarity_residual <= 1e-9  # the exact point of its cell
    # autograd is an independent check of loss_and_gradient (both use relu'(0) = 0)
    for name in ("exp", "logistic"):
        model.zero_grad()
        q = y * model(x).squeeze(1)
        loss = torch.exp(-q).mean() if name == "exp" else torch.nn.functional.softplus(-q).mean()
        loss.backward()
        auto = np.concatenate(
            [
                last.weight.grad.reshape(-1).numpy(),
                first.weight.grad.reshape(-1).numpy(),
                first.bias.grad.numpy(),
            ]
        )
        value, grad = loss_and_gradient(net, data, name)
        assert value == pytest.approx(float(loss.detach()), rel=1e-12)
        np.testing.assert_allclose(grad, auto, rtol=1e-10, atol=1e-14)


def test_rescaled_puts_the_min_margin_at_one():
    ds = Dataset([0.0, 1.0], [1, 1])
    net = ReLUNetwork([2.0], [[1.0]], [1.0])  # N(x) = 2 (x + 1): margins 2 and 4
    # theta / sqrt(2) computes N / 2 (2-homogeneity): margins 1 and 2
    np.testing.assert_allclose(rescaled(net, ds).margins(ds.X, ds.y), [1.0, 2.0], rtol=1e-15)
    assert rescaled(net, ds, shrink=False) is net  # already feasible: kept
    low = net.scaled(0.5)  # N / 4: margins 0.5 and 1, scaled up by sqrt(2)
    np.testing.assert_allclose(
        rescaled(low, ds, shrink=False).margins(ds.X, ds.y), [1.0, 2.0], rtol=1e-15
    )
    assert rescaled(ReLUNetwork([-1.0], [[1.0]], [1.0]), ds) is None  # does not separate
