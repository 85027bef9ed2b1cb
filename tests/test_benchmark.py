"""The throughput benchmark (nup_utils.benchmark, issue #17) and the training engine's precision, memory
format and flip test-time augmentation options: tiny models, fractions of a second."""

import json

import pytest
import torch
from torch import nn

from nup_utils import benchmark, models, runtime, training


def test_measure_rows_and_bad_input():
    r = benchmark.measure("imagenet", 2, 32, 4, workload="attack", precision="fp32", channels_last=True,
                          device="cpu", seconds=0.01, repeats=2)  # fmt: skip
    assert r["images_per_s"] > 0 and r["spread"][0] <= r["images_per_s"] <= r["spread"][1]
    assert (r["stem"], r["width"], r["px"], r["workload"], r["channels_last"]) == ("imagenet", 2, 32, "attack", True)
    for kw, msg in (({"workload": "infer"}, "workload="), ({"precision": "fp16"}, "precision=")):
        args = dict(workload="train", precision="fp32", channels_last=False, device="cpu", seconds=0.01) | kw
        with pytest.raises(ValueError, match=msg):
            benchmark.measure("cifar", 2, 32, 4, **args)
    with pytest.raises(ValueError, match="grid="):
        benchmark.run("huge")


def test_main_writes_a_record_and_best_picks_the_fastest(tmp_path, monkeypatch):
    monkeypatch.setitem(benchmark.GRIDS, "quick", [("cifar", 2, 32, 4)])
    assert benchmark.main(["--seconds", "0.01", "--repeats", "1", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    rec = json.loads(path.read_text())
    assert len(rec["rows"]) == 2 * 2 * 2 and isinstance(rec["bf16_native"], bool)  # workloads × precisions × formats
    assert rec["cpu_model"] and rec["versions"]["torch"] and "quick" in path.stem
    top = benchmark.best(rec, "cifar", 2, 32, "train")
    assert top["images_per_s"] == max(r["images_per_s"] for r in rec["rows"] if r["workload"] == "train")
    with pytest.raises(KeyError, match="no benchmark row"):
        benchmark.best(rec, "imagenet", 64, 32)


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g), torch.arange(n) % 10


def test_precision_and_channels_last_options():
    assert training.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert training.resolve_precision("auto", torch.device("cuda")) == "bf16"  # decided by the type alone
    with pytest.raises(ValueError, match="precision="):
        training.resolve_precision("fp16", torch.device("cpu"))
    x, y = _data()
    kw = dict(epochs=1, batch_size=8, lr=0.05, seed=0, schedule="cosine", progress=False)
    runs = {}
    for cl in (False, True):
        torch.manual_seed(0)
        m = models.resnet18(stem="imagenet", width=2)
        runs[cl] = training.train(m, x, y, channels_last=cl, **kw)
    assert runs[True]["channels_last"] and runs[False]["precision"] == "fp32"
    # the memory format changes the kernels, not the arithmetic: the same losses up to float round-off
    assert runs[True]["train_loss"] == pytest.approx(runs[False]["train_loss"], rel=1e-4)
    torch.manual_seed(0)
    h = training.train(models.resnet18(stem="imagenet", width=2), x, y, precision="bf16", **kw)
    bf, fp = h["train_loss"][0], runs[False]["train_loss"][0]
    assert h["precision"] == "bf16" and bf != fp, "bf16 autocast is active: the arithmetic differs from fp32"
    assert abs(bf - fp) < 0.5, (bf, fp)  # the same optimisation, up to bf16 rounding (4 steps, loss ~2.5)


def test_flip_tta_mirrors_before_the_input_transform():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 64, 10))
    expand = lambda v: torch.cat([v, torch.zeros_like(v)], dim=3)  # noqa: E731  (not mirror-symmetric)
    x, y = _data(8)
    got = training.predict(model, x, input_transform=expand, flip_tta=True)
    with torch.no_grad():
        want = (model(expand(x)) + model(expand(x.flip(3)))) / 2
        wrong = (model(expand(x)) + model(expand(x).flip(3))) / 2
    assert torch.allclose(got, want, atol=1e-6) and not torch.allclose(got, wrong, atol=1e-3)
    assert torch.equal(training.predict(model, x, input_transform=expand), model(expand(x)).detach())
    acc = training.evaluate(model, x, y, input_transform=expand, flip_tta=True)
    assert acc.dtype == torch.bool and acc.shape == (8,)


def _record(rows, **over):
    dev = torch.device("cpu")
    rec = {
        "cpu_model": runtime.cpu_model(),
        "threads": {"torch_threads": torch.get_num_threads()},
        "bf16_native": benchmark.bf16_native(dev),
        "git_commit": "abcdef0123",
        "rows": rows,
    }
    return rec | over


def _row(precision, cl, ips, stem="imagenet", width=16, px=64):
    return dict(stem=stem, width=width, px=px, batch=128, workload="train", precision=precision,
                channels_last=cl, images_per_s=ips, spread=[ips, ips])  # fmt: skip


def test_fastest_reads_this_machines_record_then_measures_once(tmp_path, monkeypatch):
    monkeypatch.setenv("NUP_CACHE_DIR", str(tmp_path))
    rec = _record([_row("fp32", False, 100.0), _row("bf16", True, 300.0), _row("fp32", True, 200.0)])
    top = benchmark.fastest("imagenet", 16, 64, device="cpu", records=[rec], log=lambda *_: None)
    assert (top["precision"], top["channels_last"], top["images_per_s"]) == ("bf16", True, 300.0)
    assert "benchmark record" in top["source"] and "abcdef0" in top["source"]
    # another CPU's record, or a record without this model, is not used: the engine is measured here, once
    other = _record([_row("bf16", True, 1e9)], cpu_model="some other CPU")
    calls = []
    real = benchmark.measure
    monkeypatch.setattr(benchmark, "measure", lambda *a, **k: calls.append(k) or real(*a, **k))
    kw = dict(device="cpu", batch=4, seconds=0.01, repeats=1, log=lambda *_: None)
    got = benchmark.fastest("cifar", 2, 32, records=[other, rec], **kw)
    n_expected = 4 if benchmark.bf16_native(torch.device("cpu")) else 2  # emulated bf16 is never measured
    assert len(calls) == n_expected and "measured on this machine" in got["source"]
    assert {c["precision"] for c in calls} == ({"fp32", "bf16"} if n_expected == 4 else {"fp32"})
    again = benchmark.fastest("cifar", 2, 32, records=[], **kw)  # remembered in the cache: not re-measured
    assert len(calls) == n_expected and again == got
    assert list((tmp_path / "engine").glob("*.json"))


def test_fastest_on_cuda_is_bf16_channels_last_without_measuring(monkeypatch):
    monkeypatch.setattr(benchmark, "measure", lambda *a, **k: pytest.fail("measured on CUDA"))
    top = benchmark.fastest("cifar", 64, 32, device=torch.device("cuda"), records=[])
    assert (top["precision"], top["channels_last"]) == ("bf16", True)


def test_sbde_engine_resolves_auto_per_arm_and_keys_the_cache(monkeypatch):
    from nup_utils import sbde

    seen = []

    def fake(stem, width, px, **kw):
        seen.append(px)
        return {"precision": "bf16" if px > 32 else "fp32", "channels_last": True, "source": "test", "images_per_s": 1}

    monkeypatch.setattr(benchmark, "fastest", fake)
    rec = {**sbde.recipe("quick")}
    assert rec["precision"] == rec["channels_last"] == "auto"
    e1 = sbde.engine("baseline", "imagenet", rec, device="cpu")
    e2 = sbde.engine("sbde_k3", "imagenet", rec, device="cpu")
    assert seen == [32, 96] and (e1["precision"], e2["precision"]) == ("fp32", "bf16")
    c1 = sbde.arm_config("baseline", "imagenet", 0, rec, "x", eng=e1)
    c2 = sbde.arm_config("baseline", "imagenet", 0, rec, "x", eng={**e1, "precision": "bf16"})
    assert c1 != c2 and c1["precision"] == "fp32" and c1["channels_last"] is True
    fixed = sbde.engine("baseline", "imagenet", sbde.recipe("smoke"), device="cpu")
    assert fixed == {"precision": "fp32", "channels_last": False, "source": "recipe"} and seen == [32, 96]
