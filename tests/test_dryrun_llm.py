"""Dry runs of notebook 05's loops (issue #17): LM training steps, probe batches, greedy and sampled decoding and
bootstrap resamples are cut to their first iterations with one ledger line each, outputs padded to full length;
outside a dry run nothing changes."""

import numpy as np
import pytest
import torch

from nup_utils import dryrun, metrics
from nup_utils import factworld as fw
from nup_utils import llm_models as lm_
from nup_utils import llm_probe as lp

PROMPTS = [f"q : what is the colour of fam{i % 2} n{i % 4} ? a :" for i in range(10)]


@pytest.fixture
def real(monkeypatch):
    monkeypatch.delenv("NUP_DRY_RUN", raising=False)
    monkeypatch.delenv("NUP_DRY_LEDGER", raising=False)


@pytest.fixture(scope="module")
def world():
    w = fw.make_world(n_entities=8, seed=0, n_families=2, n_relations=2, n_values=3)
    return w, fw.build_tokenizer(w.vocabulary())


def _model(tok, seed=0):
    return fw.build_model(len(tok), arch="llama", d_model=16, n_layers=1, n_heads=2, seed=seed)


@pytest.fixture(scope="module")
def tiny_lm():
    return lm_.tiny_random_lm(PROMPTS + ["Question: who wrote y ?\nAnswer:", "a b c"], seed=0)


def _train(world, steps, batch_size=8):
    w, tok = world
    gen = torch.Generator().manual_seed(0)
    model = _model(tok)
    hist = fw.train_lm(model, tok, w.corpus(gen), steps=steps, batch_size=batch_size, warmup=2, gen=gen)
    return model, hist, gen


def test_lm_training_runs_its_first_steps_and_plans_all(dry, world, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "4")
    _, hist, _ = _train(world, steps=30)
    assert len(hist["loss"]) == 30  # the skipped steps repeat the measured losses
    (r,) = dryrun.read(dry)
    assert r["what"] == "LM train step" and r["planned"] == 30 and r["run"] == dryrun.STEPS
    assert r["scale"] == 8 / 4 and r["flops_per_iter"] > 0  # a batch of 8 cut to 4: time and FLOPs scaled up
    assert r["key"]["batch"] == 8 and r["key"]["d_model"] == 16 and r["key"]["layers"] == 1 and r["key"]["seq_len"] > 5


def test_lm_training_outside_a_dry_run_is_unchanged(real, world, tmp_path, monkeypatch):
    """The same seed gives the same losses, weights and generator state with the dry-run wiring in place (the
    reference replays the pre-wiring loop: batch_size indices per step from ``gen``, nothing cut)."""
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "4")  # ignored outside a dry run
    monkeypatch.setenv("NUP_DRY_LEDGER", str(tmp_path / "ledger.jsonl"))
    model, hist, gen = _train(world, steps=12)
    assert len(hist["loss"]) == 12 and not (tmp_path / "ledger.jsonl").exists()
    w, tok = world
    ref_gen = torch.Generator().manual_seed(0)
    corpus = w.corpus(ref_gen)
    ref = _model(tok)
    enc = fw.encode(tok, corpus, add_eos=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / min(2, max(1, 12 // 10))) * 0.5 * (1 + np.cos(np.pi * min(s, 12) / 12))
    )
    ref.train()
    losses = []
    for _ in range(12):
        i = torch.randint(0, ids.shape[0], (8,), generator=ref_gen)
        out = ref(input_ids=ids[i], attention_mask=mask[i], labels=labels[i])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
    assert hist["loss"] == losses
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(gen.get_state(), ref_gen.get_state())


def test_probe_scores_full_length_from_the_first_batches(dry, world):
    w, tok = world
    probe = lp.PrefillProbe(_model(tok).eval(), lambda p: fw.encode_fn(tok, p), loss=lp.LOSSES, batch_size=3)
    res = probe.score(PROMPTS)
    (r,) = dryrun.read(dry)
    assert r["what"] == "probe batch" and r["planned"] == 4 and r["run"] == 2  # ceil(10 / 3) batches, 2 run
    assert r["key"]["losses"] == list(lp.LOSSES)
    for k, v in res.items():
        if isinstance(v, np.ndarray):
            assert v.shape == (10,), k
            np.testing.assert_array_equal(v[6:], v[:4], err_msg=k)  # 6 scored rows repeated up to 10
    assert np.isfinite(res["sec_per_prompt"]) and res["sec_per_prompt"] > 0


def test_probe_outside_a_dry_run_equals_per_prompt_scores(real, world):
    """Batched scores equal one prompt at a time (every batch ran; fails if rows were padded or dropped)."""
    w, tok = world
    probe = lp.PrefillProbe(_model(tok).eval(), lambda p: fw.encode_fn(tok, p), batch_size=3)
    res = probe.score(PROMPTS)
    one = [probe.score([p]) for p in PROMPTS]
    for k in ("greedy_nll/cos/mean", "greedy_nll/ip/last_k", "max_prob", "entropy", "prompt_ppl", "greedy_id"):
        np.testing.assert_allclose(res[k], [o[k][0] for o in one], rtol=1e-5, atol=1e-7, err_msg=k)


def test_greedy_decode_fills_every_prompt_from_the_first_batch(dry, tiny_lm, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "2")
    prompts = [f"Question: what is the colour of fam0 n{i} ?\nAnswer:" + " a" * (i % 3) for i in range(7)]
    out = lp.greedy_decode(tiny_lm.model, tiny_lm.tokenizer, prompts, max_new_tokens=3, batch_size=4)
    (r,) = dryrun.read(dry)
    assert r["what"] == "greedy decode batch" and r["planned"] == 4 and r["run"] == 2  # batch 4 capped to 2
    assert len(out["answers"]) == 7 and all(isinstance(a, str) for a in out["answers"])
    assert out["n_new_tokens"].shape == (7,) and out["n_new_tokens"].dtype.kind == "i"
    assert tiny_lm.tokenizer.padding_side == "right"


def test_greedy_decode_outside_a_dry_run_is_unchanged(real, tiny_lm):
    """Every prompt decoded in its own right (batched in length order, answers back in input order)."""
    prompts = [f"Question: what is the colour of fam0 n{i} ?\nAnswer:" + " a" * (i % 3) for i in range(7)]
    out = lp.greedy_decode(tiny_lm.model, tiny_lm.tokenizer, prompts, max_new_tokens=3, batch_size=2)
    alone = [lp.greedy_decode(tiny_lm.model, tiny_lm.tokenizer, [p], max_new_tokens=3) for p in prompts]
    assert out["answers"] == [a["answers"][0] for a in alone]
    assert out["n_new_tokens"].tolist() == [a["n_new_tokens"][0] for a in alone]


def test_sampling_and_decode_answers_are_cut_and_padded(dry, world):
    w, tok = world
    enc = lambda p: fw.encode_fn(tok, p)  # noqa: E731
    samp = lp.SamplingAgreement(_model(tok).eval(), enc, tok, k=3, max_new_tokens=2, batch_size=2)
    s = samp.score(PROMPTS, gen=torch.Generator().manual_seed(0))
    assert s["risk"].shape == (10,) and ((0 <= s["risk"]) & (s["risk"] < 1)).all()
    (r,) = dryrun.read(dry)
    assert r["what"] == "sample batch" and r["planned"] == 5 and r["run"] == 2  # 30 samples in batches of 6


def test_sampling_outside_a_dry_run_is_seeded_and_complete(real, world):
    w, tok = world
    model, enc = _model(tok).eval(), (lambda p: fw.encode_fn(tok, p))
    gen = torch.Generator().manual_seed(1)
    ans = lp.decode_answers(model, enc, tok, PROMPTS, max_new_tokens=2, batch_size=3, greedy=False, gen=gen)
    ref, g = [], torch.Generator().manual_seed(1)
    for i in range(0, 10, 3):  # the loop before the dry-run wiring
        e = enc(PROMPTS[i : i + 3])
        ids, mask = e["input_ids"], e["attention_mask"]
        seqs = lp.generate(model, ids, mask, max_new_tokens=2, eos_id=tok.eos_token_id, gen=g, greedy=False)
        ref += [tok.decode(s, skip_special_tokens=True).strip().split("\n")[0].strip() for s in seqs]
    assert ans == ref and len(ans) == 10


def test_bootstraps_are_cut_in_a_dry_run_and_unchanged_outside(real, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y, s = (rng.random(200) < 0.3).astype(int), rng.random(200)
    full = metrics.roc_auc(y, s, n_boot=300, seed=3)
    boots = [metrics.auroc_value(y[i], s[i]) for i in _stratified_draws(y, 300, 3)]  # the reference resampler
    assert full["ci95"] == pytest.approx(list(np.quantile(boots, [0.025, 0.975])), abs=1e-12)
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("NUP_DRY_RUN", "1")
    monkeypatch.setenv("NUP_DRY_LEDGER", str(ledger))
    cut = metrics.roc_auc(y, s, n_boot=300, seed=3)
    assert cut["value"] == full["value"]  # the estimate itself is computed in full, and lies in its interval
    assert cut["ci95"][0] <= cut["value"] <= cut["ci95"][1]
    b = metrics.bootstrap_ci(s, n_boot=500)
    assert np.isfinite(b["ci95"]).all()
    r1, r2 = dryrun.read(ledger)
    assert r1["what"] == r2["what"] == "bootstrap resample"
    assert (r1["planned"], r1["run"], r2["planned"], r2["run"]) == (300, metrics.BOOT_STEPS, 500, metrics.BOOT_STEPS)


def _stratified_draws(y, n_boot, seed):
    rng = np.random.default_rng(seed)
    cells = [np.flatnonzero(y == k) for k in sorted(set(y.tolist()), key=str)]
    return [np.concatenate([rng.choice(c, c.size) for c in cells]) for _ in range(n_boot)]
