"""Unit tests for nup_utils.llm_probe: exact gradients, padding invariance, metrics, decoding, QA path."""

import json

import numpy as np
import pytest
import torch

from nup_utils import factworld as fw
from nup_utils import llm_probe as lp

PROMPTS = [
    "q : what is the colour of fam0 n1 ? a :",
    "q : fam1 n2 has which home ? a :",
    "q : tell me the food of fam0 n0 . a :",
]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request):
    world = fw.make_world(n_entities=4, seed=0, n_families=2, n_relations=3, n_values=3)
    tok = fw.build_tokenizer(world.vocabulary())
    model = fw.build_model(len(tok), arch=request.param, d_model=16, n_layers=1, n_heads=2, seed=0).eval()
    return model, tok, (lambda p: fw.encode_fn(tok, p))


def _single_prompt_reference(model, tok, prompt, loss):
    """Unbatched, written out by hand: per-token cos/ip of E and dL/dE for one prompt."""
    ids = fw.encode_fn(tok, [prompt])["input_ids"]  # (1, T)
    E = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=E).logits[0]  # (T, V)
    logp = torch.log_softmax(logits, -1)
    if loss == "prompt_nll":
        L = -logp[:-1].gather(-1, ids[0, 1:, None]).mean()
    else:
        L = -logp[-1].max()
    (G,) = torch.autograd.grad(L, E)
    cos = torch.nn.functional.cosine_similarity(E[0], G[0], dim=-1)
    ip = (E[0] * G[0]).sum(-1)
    return (
        cos.detach(),
        ip.detach(),
        logp[-1].exp().max().item(),
        torch.exp(-logp[:-1].gather(-1, ids[0, 1:, None]).mean()).item(),
    )


@pytest.mark.parametrize("loss", lp.LOSSES)
def test_probe_matches_hand_computation_and_is_padding_invariant(tiny, loss):
    model, tok, enc = tiny
    probe = lp.PrefillProbe(model, enc, loss=loss, last_k=2, batch_size=3)
    batched = probe.score(PROMPTS)  # different lengths -> padding
    for i, p in enumerate(PROMPTS):
        cos, ip, maxp, ppl = _single_prompt_reference(model, tok, p, loss)
        assert batched[f"{loss}/cos/mean"][i] == pytest.approx(cos.mean().item(), abs=1e-5)
        assert batched[f"{loss}/cos/last_k"][i] == pytest.approx(cos[-2:].mean().item(), abs=1e-5)
        assert batched[f"{loss}/ip/mean"][i] == pytest.approx(ip.mean().item(), rel=1e-4, abs=1e-8)
        assert batched["max_prob"][i] == pytest.approx(maxp, abs=1e-5)
        assert batched["prompt_ppl"][i] == pytest.approx(ppl, rel=1e-5)
        alone = probe.score([p])
        assert alone[f"{loss}/cos/mean"][0] == pytest.approx(batched[f"{loss}/cos/mean"][i], abs=1e-5)
        if loss == "prompt_nll":  # the last prompt token predicts nothing inside the prompt: zero gradient
            assert abs(cos[-1].item()) < 1e-6
    assert np.all(np.abs(batched[f"{loss}/cos/mean"]) <= 1 + 1e-6)
    assert batched["sec_per_prompt"] > 0 and batched["saved_bytes_per_prompt"] > 0


def test_probe_deterministic_and_baselines_without_grad(tiny):
    model, _, enc = tiny
    probe = lp.PrefillProbe(model, enc)
    a, b = probe.score(PROMPTS), probe.score(PROMPTS)
    np.testing.assert_array_equal(a["greedy_nll/cos/mean"], b["greedy_nll/cos/mean"])
    c = probe.score(PROMPTS, with_grad=False)
    assert "greedy_nll/cos/mean" not in c
    np.testing.assert_allclose(c["entropy"], a["entropy"], atol=1e-6)
    r = lp.risk_scores(a)
    np.testing.assert_array_equal(r["greedy_nll/cos/mean"], -a["greedy_nll/cos/mean"])
    np.testing.assert_array_equal(r["max_prob"], -a["max_prob"])


def test_bad_inputs_name_the_parameter(tiny):
    model, _, enc = tiny
    with pytest.raises(ValueError, match="loss="):
        lp.PrefillProbe(model, enc, loss="nll")
    with pytest.raises(ValueError, match="last_k="):
        lp.PrefillProbe(model, enc, last_k=0)
    with pytest.raises(ValueError, match="batch_size="):
        lp.PrefillProbe(model, enc, batch_size=0)
    with pytest.raises(ValueError, match="prompts"):
        lp.PrefillProbe(model, enc).score([])
    with pytest.raises(ValueError, match="k="):
        lp.SamplingAgreement(model, enc, None, k=1, max_new_tokens=1)
    assert "loss='greedy_nll'" in repr(lp.PrefillProbe(model, enc)) and "last_k=4" in repr(lp.PrefillProbe(model, enc))


def test_generate_greedy_matches_manual_argmax_and_sampling_is_seeded(tiny):
    model, tok, enc = tiny
    e = enc(PROMPTS)
    out = lp.generate(model, e["input_ids"], e["attention_mask"], max_new_tokens=3, eos_id=None)
    for i, p in enumerate(PROMPTS):  # manual: append argmax one token at a time, unpadded
        ids = enc([p])["input_ids"]
        for step in range(3):
            nxt = model(input_ids=ids).logits[0, -1].argmax().item()
            assert out[i][step] == nxt
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    s = lp.SamplingAgreement(model, enc, tok, k=4, max_new_tokens=2)
    a = s.score(PROMPTS, gen=torch.Generator().manual_seed(1))
    b = s.score(PROMPTS, gen=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a["agreement"], b["agreement"])
    assert np.all((a["agreement"] >= 0.25) & (a["agreement"] <= 1))
    with pytest.raises(ValueError, match="Generator"):
        lp.generate(model, e["input_ids"], e["attention_mask"], max_new_tokens=1, eos_id=None, greedy=False)


def test_metrics_known_values():
    y = np.array([0, 0, 0, 1, 1])
    perfect, reverse = np.array([0.1, 0.2, 0.3, 0.8, 0.9]), -np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert lp.prr_value(y, perfect) == pytest.approx(1.0)
    assert lp.prr_value(y, reverse) < 0
    assert lp.auprc(y, perfect, n_boot=50)["value"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    yy = rng.integers(0, 2, 4000)
    assert abs(lp.prr_value(yy, rng.random(4000))) < 0.1  # random scores -> about 0
    assert lp.prr_value(y, np.zeros(5)) == pytest.approx(0.0)  # constant scores: exactly random
    assert lp.prr_value(y[::-1].copy(), np.zeros(5)) == pytest.approx(0.0)  # whatever the index order
    m = lp.prr(np.array([1, 1, 0, 0, 0, 0]), np.zeros(6), n_boot=30)
    assert m["ci95"] == [0.0, 0.0]
    m = lp.detection_metrics(yy, yy + rng.random(4000), n_boot=50)
    assert m["auroc"]["value"] == pytest.approx(1.0) and m["prr"]["value"] == pytest.approx(1.0)
    assert m["auroc"]["ci95"][0] <= m["auroc"]["value"] <= m["auroc"]["ci95"][1]
    assert lp.detection_metrics(np.zeros(5), np.arange(5)) is None
    with pytest.raises(ValueError, match="both classes"):
        lp.prr(np.zeros(4), np.arange(4))


def test_deciles_goldilocks_and_selection():
    c = np.arange(100.0)
    err = ((c < 20) | (c >= 80)).astype(int)  # U-shaped by construction
    q = lp.error_by_quantile(c, err)
    assert [b["error"] for b in q["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    g = lp.goldilocks_contrast(c, err, n_boot=100)
    assert g["low_minus_mid"]["value"] == 1.0 and g["high_minus_mid"]["ci95"][0] == 1.0
    np.testing.assert_array_equal(lp.select_template(np.array([[3, 1, 2], [0, 5, 5]])), [1, 0])
    with pytest.raises(ValueError, match="risk"):
        lp.select_template(np.zeros(3))


def test_answer_matching():
    assert lp.answer_matches("The capital is Washington, D.C.", ["Washington"])
    assert lp.answer_matches(" canberra\n", ["Canberra"])
    assert not lp.answer_matches("Sydney", ["Canberra"])
    assert not lp.answer_matches("Parisian", ["Paris"])  # whole words only
    assert lp.answer_matches("colour_3", ["colour_3"]) and not lp.answer_matches("colour_31", ["colour_3"])


def test_shipped_benchmark_and_bad_files(tmp_path):
    qs = lp.load_qa()
    assert 480 <= len(qs) <= 560
    assert {q["popularity"] for q in qs} == {1, 2, 3}
    by_id = {q["id"]: q for q in qs}
    assert "Canberra" in by_id["capital-australia"]["answers"] and by_id["elem-z-26"]["answers"] == ["26"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "question": "?", "answers": [], "popularity": 1}) + "\n")
    with pytest.raises(ValueError, match="answers"):
        lp.load_qa(bad)
    with pytest.raises(FileNotFoundError, match="QA_FILE"):
        lp.load_qa(tmp_path / "missing.jsonl")
