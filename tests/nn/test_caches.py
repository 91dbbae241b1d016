"""Layer caches belong to one forward: a backward after a second forward, or
without its own forward, is an error that says so; inference (eval mode,
``numformer.no_grad()``) keeps no cache anywhere in a model."""

import threading

import numpy as np
import pytest

import numformer
from numformer import nn
from numformer.pretrained.bert import BertClassifier, BertModel
from numformer.pretrained.config import BertConfig
from numformer.pretrained.sentence import sentence_embeddings
from numformer.train.generate import generate

V = 13


def cfg(**kw):
    base = dict(vocab_size=V, dim=8, n_heads=2, n_layers=2, d_ff=12, max_len=10, dropout=0.1)
    base.update(kw)
    return nn.ModelConfig(**base)


def kept(model):
    """Names of the modules holding a cache."""
    return [name or type(model).__name__ for name, m in model.named_modules()
            if m._cache is not None]


def leaves_with_caches(model):
    """Modules that call _set_cache in a training forward (at least one per model)."""
    return [m for m in model.modules() if m._cache is not None]


def models():
    bert = BertModel(BertConfig(vocab_size=V, hidden_size=8, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=12,
                                max_position_embeddings=10))
    return {
        "mlm": (nn.MaskedLM(cfg()), lambda ids: ((ids, None, np.array([1, 4, 6])), {})),
        "mlm_all": (nn.MaskedLM(cfg(tie_weights=False)), lambda ids: ((ids,), {})),
        "classifier": (nn.Classifier(cfg(pooling="cls")), lambda ids: ((ids,), {})),
        "causal_lm": (nn.CausalLM(cfg(norm_first=True)), lambda ids: ((ids,), {})),
        "bert_classifier": (BertClassifier(bert, 3, pooling="pooler"), lambda ids: ((ids,), {})),
    }


@pytest.mark.parametrize("name", list(models()))
def test_backward_after_a_second_forward_raises_and_drops_every_cache(rng, name):
    model, inputs = models()[name]
    ids = rng.integers(0, V, (2, 6))
    args, kw = inputs(ids)
    model(*args, **kw)
    out = model(*args, **kw)
    assert kept(model)  # the training forwards keep caches
    with pytest.raises(RuntimeError, match="a second forward replaced the first forward's cache"):
        model.backward(np.ones_like(out))
    assert kept(model) == []  # all dropped: the next step starts clean
    out = model(*args, **kw)
    model.backward(np.ones_like(out))  # and a proper step works again
    assert kept(model) == []  # every cache consumed by its backward


def test_the_error_names_the_module_class_and_its_path(rng):
    m = nn.MaskedLM(cfg())
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    ffn = m.body.encoder.blocks[1].ffn
    ffn(x)
    out = ffn(x)
    with pytest.raises(RuntimeError, match=r"Linear \(MaskedLM\.body\.encoder\.blocks\.1\.ffn"
                                           r"\.fc2\)\.backward: a second forward"):
        ffn.backward(np.ones_like(out))
    assert m.body.encoder.blocks[1].ffn.path() == "MaskedLM.body.encoder.blocks.1.ffn"
    assert nn.Linear(2, 2).path() == "Linear"


def test_backward_without_forward_and_twice_for_one_forward(rng):
    lin = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r"Linear\.backward called without a forward pass"):
        lin.backward(np.zeros((1, 2), np.float32))
    x = rng.standard_normal((4, 3)).astype(np.float32)
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    with pytest.raises(RuntimeError, match="without a forward pass .*twice for one forward"):
        lin.backward(np.ones((4, 2), np.float32))


@pytest.mark.parametrize("name", list(models()))
@pytest.mark.parametrize("mode", ["eval", "no_grad"])
def test_inference_keeps_no_cache_anywhere(rng, name, mode):
    model, inputs = models()[name]
    ids = rng.integers(0, V, (2, 6))
    args, kw = inputs(ids)
    model(*args, **kw)
    assert len(leaves_with_caches(model)) >= 5  # a training forward does keep them
    if mode == "eval":
        model.eval()
        out = model(*args, **kw)
    else:
        assert numformer.is_grad_enabled()
        with numformer.no_grad():
            assert not numformer.is_grad_enabled()
            out = model(*args, **kw)
        assert numformer.is_grad_enabled() and model.training
    assert kept(model) == []  # the inference forward also dropped the earlier ones
    why = "eval mode" if mode == "eval" else r"numformer\.no_grad\(\)"
    with pytest.raises(RuntimeError, match=f"the last forward ran (in|under) {why}"):
        model.backward(np.ones_like(out))


def test_no_grad_keeps_dropout_of_the_mode_and_the_same_outputs(rng):
    """no_grad only stops caching: in training mode dropout still drops, and the
    outputs are those of a caching forward."""
    m = nn.Classifier(cfg(dropout=0.5))
    ids = rng.integers(0, V, (3, 6))
    m.seed(0)
    with_cache = m(ids)
    m.seed(0)
    with nn.no_grad():
        without = m(ids)
    np.testing.assert_array_equal(with_cache, without)
    m.eval()
    assert not np.allclose(m(ids), without)  # eval mode: no dropout, another function


def test_no_grad_nests_works_as_decorator_and_is_per_thread(rng):
    lin = nn.Linear(3, 2)
    x = rng.standard_normal((2, 3)).astype(np.float32)

    @numformer.no_grad()
    def infer():
        return lin(x)

    with numformer.no_grad():
        with numformer.no_grad():
            pass
        assert not numformer.is_grad_enabled()  # the inner exit restores the outer state
    assert numformer.is_grad_enabled()
    infer()
    assert lin._cache is None and numformer.is_grad_enabled()

    inside, release = threading.Event(), threading.Event()

    def other_thread():
        with numformer.no_grad():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other_thread)
    t.start()
    inside.wait(10)
    try:
        assert numformer.is_grad_enabled()  # another thread's no_grad does not reach here
        lin(x)
        assert lin._cache is not None
    finally:
        release.set()
        t.join()
    lin.backward(np.ones((2, 2), np.float32))


def test_generation_attention_maps_and_embeddings_leave_no_cache(rng):
    lm = nn.CausalLM(cfg(norm_first=True))
    prompt = rng.integers(0, V, 3)
    for use_cache in (True, False):
        out = generate(lm, prompt, 4, seed=1, use_cache=use_cache, exclude=())
        assert out.shape == (7,) and lm.training
        assert kept(lm) == []
    maps = nn.attention_maps(lm, rng.integers(0, V, (1, 5)))
    assert len(maps) == 2 and maps[0].shape == (1, 2, 5, 5)
    assert kept(lm) == [] and lm.training

    class Tok:  # the part of a WordPiece tokenizer sentence_embeddings uses
        pad_id = 0

        def encode(self, s, max_length=None):
            return [2 + (ord(c) % (V - 2)) for c in s][:max_length]

    bert = BertModel(BertConfig(vocab_size=V, hidden_size=8, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=12,
                                max_position_embeddings=10))
    emb = sentence_embeddings(bert, Tok(), ["abc", "hello", "x"], batch_size=2, max_length=8)
    assert emb.shape == (3, 8) and np.isfinite(emb).all()
    assert kept(bert) == [] and bert.training


def test_an_evaluation_of_a_tiny_model_leaves_every_cache_none(rng):
    """What the training loop's evaluate does (eval mode, no_grad for the loss
    module, which is not part of the model): afterwards no module of either
    holds a cache, so evaluation holds no activations between steps."""
    from numformer.train.loop import Trainer

    model = nn.MaskedLM(cfg())
    loss = nn.CrossEntropyLoss()
    batches = [(rng.integers(0, V, (2, 6)), np.array([0, 5, 9]), rng.integers(0, V, 3))
               for _ in range(3)]

    class Task:  # the part of a task Trainer.evaluate calls
        def evaluate(self):
            total = 0.0
            for ids, pos, y in batches:
                total += float(loss(model(ids, None, pos), y))
            return {"eval_loss": total / len(batches)}

    class Holder:  # Trainer.evaluate's self: the model, the task, the run's state
        pass

    h = Holder()
    h.model, h.task = model, Task()
    metrics = Trainer.evaluate(h, record=False)
    assert np.isfinite(metrics["eval_loss"]) and model.training
    assert kept(model) == [] and loss._cache is None
    # the next training step is a clean forward and backward
    ids, pos, y = batches[0]
    loss(model(ids, None, pos), y)
    model.backward(loss.backward())
    assert kept(model) == [] and loss._cache is None


def test_inference_between_steps_changes_no_gradient(rng):
    """Two runs from the same seed, one evaluating (eval mode and no_grad forwards)
    before every step: the same gradients and parameters after three AdamW
    steps, bit for bit, with dropout on."""
    from numformer.optim import AdamW

    batches = [(rng.integers(0, V, (2, 6)), np.array([1, 4, 7, 10])) for _ in range(3)]
    dlogits = rng.standard_normal((4, V)).astype(np.float32)
    runs = []
    for interleave in (False, True):
        m = nn.MaskedLM(cfg(dropout=0.2), seed=3)
        opt = AdamW(m, lr=1e-2)
        grads = []
        for step, (ids, pos) in enumerate(batches):
            if interleave:
                m.eval()
                m(ids, None, pos)
                m.train()
                with nn.no_grad():
                    m(ids)
            m.seed((0, step))
            m.zero_grad()
            m(ids, None, pos)
            m.backward(dlogits)
            grads.append({n: p.grad.copy() for n, p in m.named_parameters()})
            opt.step()
        runs.append((grads, m.state_dict()))
    (g0, s0), (g1, s1) = runs
    for a, b in zip(g0, g1):
        for n in a:
            np.testing.assert_array_equal(a[n], b[n], err_msg=n)
    assert any(np.abs(g).max() > 0 for g in g0[0].values())
    for n in s0:
        np.testing.assert_array_equal(s0[n], s1[n], err_msg=n)
