"""all-MiniLM-L6-v2 in numformer against transformers' BertModel under torch.

float32: the last hidden states at real tokens, the pooler output and the
sentence embeddings agree to 1e-4 max absolute difference. Padded positions
are compared in float64 (to 1e-9), where rounding cannot hide a difference:
in float32 the [PAD] rows, which nothing downstream reads, drift by a few
1e-5 in both implementations.
"""

import copy

import numpy as np
import pytest

from numformer.pretrained import sentence_embeddings
from numformer.testing import assert_close

TEXTS = [
    "A man is playing a guitar on the stage.",
    "Héllo wörld — naïve café!",
    "Numbers like 3.14159 and 1,000,000 matter; so does punctuation?!",
    "東京は日本の首都です。",
    "",
    "short",
]
LONG = " ".join(["Every sentence of this paragraph repeats, so that the text runs past the "
                 "two hundred and fifty-six tokens where the model's inputs are cut."] * 12)
ATOL = 1e-4


@pytest.fixture(scope="module")
def torch_bert(real_model_dir):
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
    transformers = pytest.importorskip("transformers", reason="pip install transformers")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = transformers.BertModel.from_pretrained(str(real_model_dir)).eval()
    return torch, model


def hf_forward(torch, model, ids, key_mask, token_type_ids=None):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids),
                    attention_mask=torch.from_numpy(key_mask.astype(np.int64)),
                    token_type_ids=None if token_type_ids is None
                    else torch.from_numpy(token_type_ids))
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def hf_sentence_embeddings(torch, model, ids, key_mask):
    """sentence-transformers' Pooling(mean) + Normalize on transformers' hidden states."""
    h, _ = hf_forward(torch, model, ids, key_mask)
    h = torch.from_numpy(h)
    m = torch.from_numpy(key_mask).unsqueeze(-1).to(h.dtype)
    pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def test_hidden_states_and_pooler_equal_transformers(real_bert, torch_bert):
    torch, hf = torch_bert
    model, tok = real_bert
    b = tok(TEXTS)
    tt = b.token_type_ids.copy()
    tt[0, 5:] = 1  # a second segment, so the token-type table is checked too
    h = model(b.ids, b.key_mask, tt)
    ref_h, ref_pooled = hf_forward(torch, hf, b.ids, b.key_mask, tt)
    assert h.dtype == np.float32 and h.shape == ref_h.shape == (len(TEXTS), b.ids.shape[1], 384)
    assert_close(h[b.key_mask], ref_h[b.key_mask], rtol=0, atol=ATOL,
                 what="last hidden state at real tokens (float32)")
    assert_close(model.pooler(h), ref_pooled, rtol=0, atol=ATOL, what="pooler output")


def test_float64_equals_transformers_at_every_position(real_model_dir, torch_bert):
    from numformer.pretrained import load_bert
    torch, hf = torch_bert
    hf64 = copy.deepcopy(hf).double()
    model, tok = load_bert(real_model_dir, dtype=np.float64)
    b = tok(TEXTS[:3] + TEXTS[-1:])
    h = model(b.ids, b.key_mask)
    assert h.dtype == np.float64
    ref, _ = hf_forward(torch, hf64, b.ids, b.key_mask)
    assert (~b.key_mask).any()  # padding is really compared
    assert_close(h, ref, rtol=0, atol=1e-9, what="float64 hidden states, padding included")


def test_sentence_embeddings_equal_sentence_transformers_recipe(real_bert, torch_bert):
    torch, hf = torch_bert
    model, tok = real_bert
    texts = TEXTS[:3] + [LONG] + TEXTS[3:]
    # length-sorted batches of two: [LONG, TEXTS[2]] at 256 tokens, then the short ones
    emb = sentence_embeddings(model, tok, texts, batch_size=2)
    assert emb.dtype == np.float32 and emb.shape == (len(texts), 384)
    ref = np.zeros_like(emb)
    for rows in ([3], [0, 1, 2, 4, 5, 6]):
        b = tok([texts[i] for i in rows])  # max_length 256, as sentence_bert_config.json says
        ref[rows] = hf_sentence_embeddings(torch, hf, b.ids, b.key_mask)
    assert len(tok.encode(LONG, truncation=False)) > 256 == len(tok.encode(LONG))
    assert_close(emb, ref, rtol=0, atol=ATOL, what="sentence embeddings")


def test_embeddings_do_not_depend_on_batching(real_bert):
    model, tok = real_bert
    one = sentence_embeddings(model, tok, TEXTS, batch_size=1)
    many = sentence_embeddings(model, tok, TEXTS, batch_size=32)
    assert_close(many, one, rtol=0, atol=1e-5, what="batch of 6 vs one at a time")
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, rtol=1e-5)


def test_similar_sentences_score_higher_than_unrelated(real_bert):
    model, tok = real_bert
    e = sentence_embeddings(model, tok, [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply on Monday.",
        "A cat sleeps on the warm windowsill.",
        "A kitten is napping in the sun by the window."])
    sim = e @ e.T  # unit rows: cosine similarities
    assert sim[0, 1] > 0.5 > max(sim[0, 2], sim[0, 3])
    assert sim[3, 4] > max(sim[3, 0], sim[3, 2]) + 0.3


def test_eval_mode_is_restored_and_dropout_is_off(real_bert):
    model, tok = real_bert
    model.train()
    try:
        a = sentence_embeddings(model, tok, TEXTS[:2])
        b = sentence_embeddings(model, tok, TEXTS[:2])
        assert model.training
        np.testing.assert_array_equal(a, b)  # no dropout inside sentence_embeddings
    finally:
        model.eval()
