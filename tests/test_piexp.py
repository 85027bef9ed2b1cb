import math

import numpy as np
import pytest
import torch

from nup_utils import piexp, runtime

TINY = dict(n_train=32, n_test=8, max_iter=5)


def test_expansion_layout():
    assert piexp.expansion(1, math.pi) == ()
    assert piexp.expansion(5, math.pi) == (math.pi,) * 4
    assert piexp.expansion(5, (0, 1, math.e)) == (0.0, 1.0, math.e, 0.0)
    m = piexp.ExpandedMLP(piexp.expansion(5, (1, 2, 3, 4)))
    x = torch.tensor([[7.0], [8.0]])
    assert m.expand(x).tolist() == [[1, 2, 7, 3, 4], [1, 2, 8, 3, 4]]  # x in the middle
    assert "consts=[1.0, 2.0, 3.0, 4.0]" in repr(m) and "dim=5" in repr(m)
    assert "scale=" in repr(piexp.ARMS["Bias-ctrl"].build(runtime.make_generator(0)))


def test_parameter_counts():
    g = runtime.make_generator(0)
    n = {a: sum(p.numel() for p in piexp.ARMS[a].build(g).parameters()) for a in ("Std", "Exp-5", "Adjusted", "Bias-ctrl")}
    assert n == {"Std": 17951, "Exp-5": 18351, "Adjusted": 18875, "Bias-ctrl": 17951}


def test_zero_expansion_is_the_1d_function_class():
    """[0, 0, x, 0, 0] computes exactly what a 1-D MLP with the x column computes, and the
    constant columns never receive a gradient."""
    exp0 = piexp.ARMS["Exp-5 0"].build(runtime.make_generator(1), bias_init="default")
    std = piexp.ExpandedMLP(())
    with torch.no_grad():
        std.layers[0].weight.copy_(exp0.layers[0].weight[:, 2:3])
        std.layers[0].bias.copy_(exp0.layers[0].bias)
        for a, b in zip(std.layers[1:], exp0.layers[1:]):
            a.load_state_dict(b.state_dict())
    x = torch.rand(64, 1, generator=runtime.make_generator(2)) * 6
    assert torch.allclose(std(x), exp0(x), atol=1e-6)
    exp0(x).pow(2).sum().backward()
    g = exp0.layers[0].weight.grad
    assert g[:, [0, 1, 3, 4]].abs().max() == 0 and g[:, 2].abs().max() > 0


@pytest.mark.parametrize("bias_init", piexp.BIAS_INITS)
def test_bias_control_matches_expanded_model(bias_init):
    exp = piexp.ARMS["Exp-5"].build(runtime.make_generator(5), bias_init=bias_init).double()
    ctrl = piexp.bias_control_from(exp)
    assert ctrl.scale == pytest.approx(math.sqrt(1 + 4 * math.pi ** 2))
    x = torch.rand(50, 1, generator=runtime.make_generator(6), dtype=torch.float64) * 6
    y = torch.sin(3 * x)
    assert torch.allclose(ctrl(x), exp(x), atol=1e-12)
    # one plain gradient step on each keeps them identical: the bias learning-rate boost is s^2
    for m in (exp, ctrl):
        loss = ((m(x) - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= 0.1 * p.grad
    assert torch.allclose(ctrl(x), exp(x), atol=1e-10)


def test_bias_control_differs_from_unscaled_bias_after_a_step():
    exp = piexp.ARMS["Exp-5"].build(runtime.make_generator(5)).double()
    ctrl = piexp.bias_control_from(exp)
    unscaled = piexp.BiasScaledMLP(1.0).double()
    unscaled.load_state_dict(ctrl.state_dict())
    with torch.no_grad():
        unscaled.beta.mul_(ctrl.scale)  # same function at init, bias scale 1
    x = torch.rand(50, 1, generator=runtime.make_generator(6), dtype=torch.float64) * 6
    y = torch.sin(3 * x)
    assert torch.allclose(unscaled(x), exp(x), atol=1e-12)
    for m in (exp, unscaled):
        ((m(x) - y) ** 2).mean().backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= 0.1 * p.grad
    assert not torch.allclose(unscaled(x), exp(x), atol=1e-6)


def test_run_one_is_deterministic_and_paired():
    a = piexp.run_one("F2", "Exp-5", 0, TINY, use_cache=False)
    b = piexp.run_one("F2", "Exp-5", 0, TINY, use_cache=False)
    assert a == {**b, "wall_s": a["wall_s"]}
    assert a["iters"] <= 5 and a["hit_cap"] == (a["iters"] == 5) and len(a["pred"]) == 8
    assert a["losses"][-1] <= a["losses"][0]
    c = piexp.run_one("F2", "Exp-5", 1, TINY, use_cache=False)
    assert c["losses"] != a["losses"]
    # Bias-ctrl starts from Exp-5's function: same initial loss
    d = piexp.run_one("F2", "Bias-ctrl", 0, TINY, use_cache=False)
    assert d["losses"][0] == pytest.approx(a["losses"][0], rel=1e-5)


def test_blown_up_fit_is_scored_as_the_mean_predictor():
    r = piexp.run_one("F1", "Std", 0, {**TINY, "lr": 1e4}, use_cache=False)
    assert r["diverged"] and len(set(r["pred"])) == 1
    ok = piexp.run_one("F1", "Std", 0, TINY, use_cache=False)
    assert not ok["diverged"] and len(set(ok["pred"])) > 1


def test_run_one_cache_round_trip():
    a = piexp.run_one("F1", "Std", 0, TINY)  # NUP_CACHE_DIR is a tmp dir (conftest)
    b = piexp.run_one("F1", "Std", 0, TINY)
    assert a == b


def test_run_grid_in_process_equals_run_one():
    specs = piexp.grid(("F1",), ("Std", "Exp-3"), (0,), TINY, use_cache=False)
    recs = piexp.run_grid(specs, workers=1)
    assert [(r["arm"], r["function"]) for r in recs] == [("Std", "F1"), ("Exp-3", "F1")]
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # run_grid fits with one thread; float sums depend on the thread count
    try:
        direct = piexp.run_one("F1", "Exp-3", 0, TINY, use_cache=False)
    finally:
        torch.set_num_threads(prev)
    assert recs[1]["losses"] == direct["losses"]
    assert torch.get_num_threads() == prev  # run_grid restored it


def test_float64_and_line_search_paths():
    r = piexp.run_one("F5", "Exp-7", 0, {**TINY, "dtype": "float64", "line_search": "strong_wolfe",
                                         "bias_init": "default"}, use_cache=False)
    assert r["evals"] >= r["iters"] and math.isfinite(r["test_mse"])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="arm='Exp-4'"):
        piexp.run_one("F1", "Exp-4", 0, TINY)
    with pytest.raises(ValueError, match="unknown protocol keys"):
        piexp.protocol(lr2=1)
    with pytest.raises(ValueError, match="dtype='half'.*float32"):
        piexp.protocol(dtype="half")
    with pytest.raises(ValueError, match="line_search"):
        piexp.protocol(line_search="armijo")
    with pytest.raises(ValueError, match="bias_init"):
        piexp.init_mlp(piexp.ExpandedMLP(()), runtime.make_generator(0), bias_init="ones")
    with pytest.raises(ValueError, match="dim=4"):
        piexp.expansion(4, 1.0)
    with pytest.raises(ValueError, match="workers"):
        piexp.run_grid([], workers=0)
    with pytest.raises(ValueError, match="shape"):
        piexp.ExpandedMLP(()).expand(torch.zeros(3))
    with pytest.raises(ValueError, match="scale"):
        piexp.BiasScaledMLP(0.0)
    with pytest.raises(ValueError, match="stat='median'"):
        piexp.per_seed_stat(np.ones((2, 2)), np.ones((2, 2)), "median")
    with pytest.raises(KeyError, match="no record"):
        piexp.table([], "iters", ["Std"], ["F1"], [0])


def test_per_seed_stats_and_table():
    base = np.array([[100.0, 200.0], [300.0, 400.0]])  # (F=2, S=2)
    other = base * np.array([[0.5], [1.0]])
    assert np.allclose(piexp.per_seed_stat(base, other, "reduction"), [1 - 350 / 400, 1 - 500 / 600])
    assert np.allclose(piexp.per_seed_stat(base, other, "ratio"), [350 / 400, 500 / 600])
    assert np.allclose(piexp.per_seed_stat(base, other, "diff"), [-25, -50])
    assert np.allclose(piexp.per_seed_stat(base, other, "log_ratio"), [math.log(0.5) / 2] * 2)
    m = piexp.seed_ci(base, other, "log_ratio")
    assert m["value"] == pytest.approx(math.log(0.5) / 2) and m["n"] == 2
    recs = [{"arm": a, "function": f, "seed": s, "iters": i} for i, (a, f, s) in
            enumerate([("A", "F1", 0), ("A", "F1", 1), ("B", "F1", 0), ("B", "F1", 1)])]
    assert piexp.table(recs, "iters", ["B", "A"], ["F1"], [0, 1]).tolist() == [[[2, 3]], [[0, 1]]]


def test_verdict_rules():
    assert piexp.decide_gain((0.2, 0.9), 0.663) == "reproduced"
    assert piexp.decide_gain((0.05, 0.3), 0.663) == "partially_reproduced"
    assert piexp.decide_gain((-0.5, 0.8), 0.663) == "inconclusive"
    assert piexp.decide_gain((-0.5, 0.1), 0.663) == "not_reproduced"
    assert piexp.decide_gain((-0.5, -0.1), 0.12) == "not_reproduced"
    assert piexp.decide_equivalent((-0.1, 0.2), 0.4) == "reproduced"
    assert piexp.decide_equivalent((0.5, 0.9), 0.4) == "not_reproduced"
    assert piexp.decide_equivalent((0.1, 0.9), 0.4) == "not_reproduced"
    assert piexp.decide_equivalent((-0.1, 0.9), 0.4) == "inconclusive"
