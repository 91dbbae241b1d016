"""BERT masking: 15% chosen, 80/10/10 among them, never padding or specials,
reproducible from a seed, positions usable by MaskedLM.

Tolerances: each share is a sample mean of N independent draws (the 80/10/10
draw of each chosen token) or a sum of independent per-row rounding errors,
so its standard deviation is known in closed form; the tests allow 5
standard deviations (a false alarm has probability < 1e-6, and the seeds are
fixed, so the tests are deterministic)."""

import math

import numpy as np
import pytest

from numformer.data import (CLS_ID, MASK_ID, PAD_ID, SPECIAL_IDS, UNK_ID, MLMMasker,
                            WordTokenizer, mask_tokens, mlm_batches)
from numformer.data.batching import collate

V = 1000  # vocabulary: 5 specials + 995 words


def batch(rng, B=4000, T=64, min_len=8):
    """<cls> + random words (some <unk>) + padding, lengths in [min_len, T]."""
    lens = rng.integers(min_len, T + 1, size=B)
    seqs = []
    for n in lens:
        s = rng.integers(5, V, size=n - 1)
        s[rng.random(n - 1) < 0.05] = UNK_ID
        seqs.append(s)
    return collate(seqs, PAD_ID, max_len=T, cls_id=CLS_ID)


def cands(ids, key_mask):
    return key_mask & ~np.isin(ids, SPECIAL_IDS)


def test_never_padding_or_specials_and_input_untouched(rng):
    ids, km = batch(rng, B=500)
    before = ids.copy()
    m = mask_tokens(ids, km, np.random.default_rng(0), vocab_size=V)
    np.testing.assert_array_equal(ids, before)
    assert km.ravel()[m.positions].all(), "a padding position was chosen"
    assert not np.isin(ids.ravel()[m.positions], SPECIAL_IDS).any(), "a special was chosen"
    np.testing.assert_array_equal(m.targets, ids.ravel()[m.positions])
    assert np.all(np.diff(m.positions) > 0)  # np.flatnonzero order, no repeats
    # nothing outside the chosen positions changed
    other = np.ones(ids.size, bool)
    other[m.positions] = False
    np.testing.assert_array_equal(m.ids.ravel()[other], ids.ravel()[other])
    assert m.ids.dtype == np.int64 and m.positions.dtype == np.int64


def test_fifteen_percent_per_row_and_overall(rng):
    ids, km = batch(rng)
    m = mask_tokens(ids, km, np.random.default_rng(1), vocab_size=V)
    n = cands(ids, km).sum(axis=1)  # (B,) candidates per row
    chosen = np.zeros(ids.size, bool)
    chosen[m.positions] = True
    k = chosen.reshape(ids.shape).sum(axis=1)  # (B,)
    # each row: 15% of its candidates rounded down or up (never less than 1)
    lo = np.maximum(np.floor(0.15 * n), 1)
    hi = np.maximum(np.ceil(0.15 * n), 1)
    assert np.all((k >= lo) & (k <= hi)), "a row's count is not 15% rounded"
    # overall: sum of k = 0.15 sum n + sum of independent roundings, each with variance
    # f (1 - f) <= 1/4 around its mean (exact expectation; at_least_one never binds here,
    # every row has >= 7 candidates, 0.15 * 7 > 1)
    sd = math.sqrt(len(n) * 0.25) / n.sum()
    share = k.sum() / n.sum()
    assert abs(share - 0.15) < 5 * sd, f"chosen share {share:.5f}, 5 sd = {5 * sd:.5f}"


def test_80_10_10(rng):
    ids, km = batch(rng)
    g = np.random.default_rng(2)
    mask = rand = same = total = 0
    for _ in range(3):
        m = mask_tokens(ids, km, g, vocab_size=V)
        got = m.ids.ravel()[m.positions]
        is_mask = got == MASK_ID  # originals are never specials, so this is "became <mask>"
        is_same = got == m.targets
        mask += is_mask.sum()
        same += is_same.sum()
        rand += (~is_mask & ~is_same).sum()
        total += m.positions.size
        # random replacements are never specials
        assert not np.isin(got[~is_mask], SPECIAL_IDS).any()
    R = V - 5  # a random token equals the original with probability 1/R
    expected = {"mask": 0.8, "random": 0.1 * (1 - 1 / R), "same": 0.1 + 0.1 / R}
    got = {"mask": mask / total, "random": rand / total, "same": same / total}
    for key, p in expected.items():
        sd = math.sqrt(p * (1 - p) / total)
        assert abs(got[key] - p) < 5 * sd, f"{key}: {got[key]:.5f} vs {p:.5f} (N={total})"


def test_choice_is_uniform_over_positions(rng):
    """Rows of one length: every word position is chosen 15% of the time."""
    B, T = 20000, 21
    ids = np.concatenate([np.full((B, 1), CLS_ID), rng.integers(5, V, size=(B, T - 1))], axis=1)
    km = np.ones((B, T), bool)
    m = mask_tokens(ids, km, np.random.default_rng(3), vocab_size=V)
    per_col = np.bincount(m.positions % T, minlength=T) / B  # (T,)
    assert per_col[0] == 0  # <cls>
    p = 0.15
    sd = math.sqrt(p * (1 - p) / B)  # a Bernoulli share per column (rows are independent)
    assert np.all(np.abs(per_col[1:] - p) < 5 * sd), per_col


def test_at_least_one_per_sequence_with_real_tokens(rng):
    seqs = [np.array([7]), np.array([], dtype=np.int64), np.array([8, 9]), np.array([UNK_ID])]
    ids, km = collate(seqs, PAD_ID, cls_id=CLS_ID)
    m = mask_tokens(ids, km, np.random.default_rng(4), vocab_size=V)
    rows = m.positions // ids.shape[1]
    assert sorted(set(rows.tolist())) == [0, 2]  # rows 1 and 3 have no candidate
    assert np.bincount(rows, minlength=4).tolist() == [1, 0, 1, 0]
    off = mask_tokens(ids, km, np.random.default_rng(4), vocab_size=V, at_least_one=False,
                      prob=1e-9)
    assert off.positions.size == 0


def test_same_seed_same_mask(rng):
    ids, km = batch(rng, B=200)
    a = mask_tokens(ids, km, np.random.default_rng(7), vocab_size=V)
    b = mask_tokens(ids, km, 7, vocab_size=V)
    c = mask_tokens(ids, km, np.random.default_rng(8), vocab_size=V)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not np.array_equal(a.positions, c.positions)


def test_positions_feed_masked_lm(rng):
    from numformer.nn import MaskedLM, ModelConfig
    tok = WordTokenizer.build(["le chat dort sur le tapis", "le chien mange"])
    seqs = tok.encode_batch(["le chat dort", "le chien mange sur le tapis", "chat"])
    (m,) = list(mlm_batches(seqs, tok, 3, rng=0, add_cls=True, shuffle=False))
    model = MaskedLM(ModelConfig(vocab_size=tok.vocab_size, dim=8, n_heads=2, n_layers=1,
                                 d_ff=16, max_len=16, dropout=0.0))
    logits = model(m.ids, m.key_mask, m.positions)
    assert logits.shape == (m.positions.size, tok.vocab_size)
    assert m.targets.shape == (m.positions.size,) and m.index.tolist() == [0, 1, 2]
    assert (m.ids[:, 0] == CLS_ID).all()


def test_masker_and_mlm_batches_are_reproducible():
    tok = WordTokenizer.build(["a b c d e f g h i j"])
    seqs = [tok.encode("a b c d e f g h i j"[: 2 * n + 1]) for n in range(1, 10)]
    runs = [[(m.ids.tolist(), m.positions.tolist()) for m in mlm_batches(seqs, tok, 4, rng=s)]
            for s in (5, 5, 6)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    masker = MLMMasker(tok, prob=0.5)
    ids, km = collate(seqs, PAD_ID)
    m = masker(ids, km, 0)
    assert m.positions.size >= 0.5 * cands(ids, km).sum() - len(seqs)


@pytest.mark.parametrize("kw,match", [
    (dict(ids=np.zeros((2, 3), np.float32)), "ids: expected a 2-D integer"),
    (dict(ids=np.zeros(3, np.int64)), "ids: expected a 2-D integer"),
    (dict(key_mask=np.ones((2, 3), np.int64)), "key_mask"),
    (dict(key_mask=np.ones((3, 2), bool)), "key_mask"),
    (dict(ids=np.full((2, 3), 1000)), r"\[0, 1000\)"),
    (dict(prob=0.0), "prob"),
    (dict(p_mask=0.95, p_random=0.1), "p_mask"),
    (dict(rng="seed"), "rng"),
])
def test_bad_arguments(kw, match):
    args = dict(ids=np.full((2, 3), 9), key_mask=np.ones((2, 3), bool), rng=0)
    args.update(kw)
    ids, km, r = args.pop("ids"), args.pop("key_mask"), args.pop("rng")
    with pytest.raises(ValueError, match=match):
        mask_tokens(ids, km, r, vocab_size=V, **args)


def test_random_replacements_uniform_over_non_specials_with_scattered_specials():
    """Specials need not be 0..4: with specials {0, 3, 7, 11} in a vocabulary of 12, the
    random replacements cover exactly the 8 other ids, each 1/8 of the time."""
    specials = np.array([0, 3, 7, 11])
    plain = np.array([1, 2, 4, 5, 6, 8, 9, 10])
    g = np.random.default_rng(9)
    ids = g.choice(plain, size=(3000, 40))
    m = mask_tokens(ids, None, g, vocab_size=12, mask_id=3, special_ids=specials, prob=1.0,
                    p_mask=0.0, p_random=1.0)
    got = m.ids.ravel()[m.positions]
    assert m.positions.size == ids.size and not np.isin(got, specials).any()
    freq = np.bincount(got, minlength=12)[plain] / got.size
    sd = np.sqrt(1 / 8 * 7 / 8 / got.size)
    assert np.all(np.abs(freq - 1 / 8) < 5 * sd), freq


# word dropout (classify/regress --word-dropout) ----------------------------------------

def test_word_dropout_replaces_a_share_of_words_only_by_unk(rng):
    from numformer.data.masking import word_dropout
    ids, km = batch(rng, B=2000)
    before = ids.copy()
    p = 0.2
    out = word_dropout(ids, km, p, UNK_ID, SPECIAL_IDS, np.random.default_rng(1))
    np.testing.assert_array_equal(ids, before)  # the input is not changed
    changed = out != ids
    assert np.all(out[changed] == UNK_ID)
    eligible = cands(ids, km)
    assert not np.any(changed & ~eligible), "padding, <cls> or another special was replaced"
    n = int(eligible.sum())  # each eligible token is an independent Bernoulli(p) draw
    share = changed.sum() / n
    assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (share, n)
    # the draws are independent of the position: the first and second halves of each row
    T = ids.shape[1]
    for half in (slice(0, T // 2), slice(T // 2, T)):
        e = eligible[:, half]
        s = changed[:, half][e].mean()
        assert abs(s - p) < 5 * math.sqrt(p * (1 - p) / e.sum()), (half, s)


def test_word_dropout_is_a_function_of_its_seed_and_zero_is_a_copy(rng):
    from numformer.data.masking import word_dropout
    ids, km = batch(rng, B=50)
    a = word_dropout(ids, km, 0.3, UNK_ID, SPECIAL_IDS, np.random.default_rng(7))
    b = word_dropout(ids, km, 0.3, UNK_ID, SPECIAL_IDS, np.random.default_rng(7))
    c = word_dropout(ids, km, 0.3, UNK_ID, SPECIAL_IDS, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
    z = word_dropout(ids, km, 0.0, UNK_ID, SPECIAL_IDS, 0)
    np.testing.assert_array_equal(z, ids)
    assert z is not ids


@pytest.mark.parametrize("kw, match", [
    (dict(prob=1.0), r"prob: expected a probability in \[0, 1\), got 1.0"),
    (dict(prob=-0.1), r"prob: expected a probability in \[0, 1\), got -0.1"),
    (dict(key_mask=np.ones((2, 3), bool)), r"key_mask: expected the shape of ids \(2, 4\), "
                                           r"got \(2, 3\)"),
])
def test_word_dropout_bad_arguments(kw, match):
    from numformer.data.masking import word_dropout
    args = dict(ids=np.full((2, 4), 9), key_mask=np.ones((2, 4), bool), prob=0.1,
                unk_id=UNK_ID, special_ids=SPECIAL_IDS, rng=0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        word_dropout(**args)
