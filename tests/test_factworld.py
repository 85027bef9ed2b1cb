"""Unit tests for nup_utils.factworld: the world's structure, tokenizer, models, training, one seed."""

import numpy as np
import pytest
import torch

from nup_utils import factworld as fw
from nup_utils import factworld_study as fs


def test_world_rules_exceptions_and_exposure():
    w = fw.make_world(n_entities=400, seed=3, p_exception=0.25)
    rule_consistent = ~w.is_exception
    # within a family, rule facts share one value per relation; exceptions never equal it
    for g in np.unique(w.families):
        for r in range(w.n_relations):
            sel = w.families == g
            vals = w.values[sel & rule_consistent[:, r], r]
            assert len(set(vals.tolist())) <= 1
            if vals.size:
                assert not np.any(w.values[sel & w.is_exception[:, r], r] == vals[0])
    assert 0.15 < w.is_exception.mean() < 0.35
    tot = w.exposure.sum(-1)
    assert (tot == 0).mean() > 0.05 and tot.max() > 5 * np.median(tot)  # unseen facts and a heavy tail
    share = w.exposure.sum((0, 1)) / w.exposure.sum()
    assert share[0] > share[1] > share[3]  # templates used unequally
    np.testing.assert_array_equal(w.values, fw.make_world(n_entities=400, seed=3).values)
    assert fw.exposure_bin(0) == "0" and fw.exposure_bin(3) == "2-3" and fw.exposure_bin(9) == "4+"


def test_bad_world_parameters():
    with pytest.raises(ValueError, match="n_relations"):
        fw.make_world(n_entities=5, seed=0, n_relations=99)
    with pytest.raises(ValueError, match="p_exception"):
        fw.make_world(n_entities=5, seed=0, p_exception=1.0)
    with pytest.raises(ValueError, match="template_weights"):
        fw.make_world(n_entities=5, seed=0, template_weights=(1, 0))
    with pytest.raises(ValueError, match="arch"):
        fw.build_model(10, arch="bert")
    with pytest.raises(ValueError, match="template"):
        fw.make_world(n_entities=5, seed=0).prompt(0, 0, 7)


def test_corpus_tokenizer_roundtrip():
    w = fw.make_world(n_entities=20, seed=1)
    tok = fw.build_tokenizer(w.vocabulary())
    corpus = w.corpus(torch.Generator().manual_seed(0))
    assert len(corpus) == w.exposure.sum()
    enc = fw.encode(tok, corpus[:5], add_eos=True)
    assert (enc["input_ids"][:, 0] == tok.bos_token_id).all()
    assert tok.unk_token_id not in enc["input_ids"].tolist()[0]
    assert tok.decode(enc["input_ids"][0], skip_special_tokens=True).split() == corpus[0].split()
    q = w.questions(2)[7]
    assert q["prompt"].startswith("q : tell me") and q["answer"] == w.answer(q["entity"], q["relation"])


@pytest.mark.parametrize("arch", fw.ARCHS)
def test_training_lowers_loss_and_is_deterministic(arch):
    w = fw.make_world(n_entities=10, seed=0, n_relations=2)
    tok = fw.build_tokenizer(w.vocabulary())
    corpus = w.corpus(torch.Generator().manual_seed(0))
    runs = []
    for _ in range(2):
        m = fw.build_model(len(tok), arch=arch, d_model=16, n_layers=1, n_heads=2, seed=0)
        runs.append(
            fw.train_lm(
                m, tok, corpus, steps=25, batch_size=16, lr=1e-2, warmup=5, gen=torch.Generator().manual_seed(0)
            )["loss"]
        )
    assert runs[0] == runs[1]
    assert np.mean(runs[0][-5:]) < np.mean(runs[0][:5]) - 0.5


def test_run_seed_shapes_and_cache(tmp_path):
    kw = dict(
        world_kw=dict(n_entities=8, n_relations=2),
        model_kw=dict(arch="llama", d_model=16, n_layers=1, n_heads=2),
        train_kw=dict(steps=5, batch_size=8),
        k_samples=2,
        batch_size=16,
    )
    a = fs.run_seed(0, **kw)
    Q = 16
    assert a["correct"].shape == (Q, 4) and a["is_val"].shape == (Q,) and 0 < a["is_val"].sum() < Q
    assert set(a["risks"]) >= {"prompt_nll/cos/mean", "greedy_nll/ip/last_k", "max_prob", "entropy", "prompt_ppl"}
    assert all(r.shape == (Q, 4) for r in a["risks"].values()) and a["sampling_risk"].shape == (Q,)
    b = fs.run_seed(0, **kw)
    assert b["cache_hit"] and not a["cache_hit"]
    np.testing.assert_allclose(a["risks"]["greedy_nll/cos/mean"], b["risks"]["greedy_nll/cos/mean"], atol=1e-6)
    np.testing.assert_array_equal(a["sampling_risk"], b["sampling_risk"])  # same numbers on a cache hit
    np.testing.assert_array_equal(a["correct"], b["correct"])
