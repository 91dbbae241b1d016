"""The attention layer's probability dropout (``Attention(dropout=p)``,
``ModelConfig.attn_dropout``): identity in eval mode, reseeded by Module.seed, the
same on both backends, the data-parallel row offset respected, old configs unchanged,
gradients right through a whole model."""

import numpy as np
import pytest

import numformer
from numformer import nn
from numformer.gradcheck import check_module
from numformer.nn.attention import Attention
from numformer.nn.layers import batch_rows_from
from numformer.nn.module import no_grad


@pytest.fixture
def backend():
    previous = numformer.get_backend()

    def use(name):
        numformer.set_backend(name)
    yield use
    numformer.set_backend(previous)


def _x(B=4, T=6, C=12, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((B, T, C)).astype(dtype)


def _mask(B=4, T=6):
    m = np.ones((B, T), bool)
    m[1, 4:] = False
    m[3, 5:] = False
    return m


LAYERS = {"fused": dict(), "gqa": dict(n_kv_heads=1), "rope": dict(rope=True)}


def _call(layer, x, kind, rows=slice(None)):
    """The layer on x (rows ``rows`` of a batch of 4 with a padded row 1)."""
    km = _mask(4, x.shape[1])[rows]
    if kind == "rope":
        from numformer.ops.rope import rope_tables
        return layer(x, km, True,
                     rope_tables=rope_tables(16, 12 // layer.n_heads, 10000.0, x.dtype))
    return layer(x, km, kind == "gqa")


@pytest.mark.parametrize("kind", list(LAYERS))
def test_eval_mode_is_no_dropout_and_training_drops(kind):
    x = _x()
    drop = Attention(12, 2, rng=3, dropout=0.5, init_std=0.3, **LAYERS[kind])
    plain = Attention(12, 2, rng=3, init_std=0.3, **LAYERS[kind])
    for a, b in zip(drop.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.value, b.value)  # the mask generator took no draw
    drop.eval(), plain.eval()
    np.testing.assert_array_equal(_call(drop, x, kind), _call(plain, x, kind))
    drop.train(), plain.train()
    with no_grad():
        assert not np.allclose(_call(drop, x, kind), _call(plain, x, kind))
    assert "dropout=0.5" in repr(drop)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_seed_repeats_the_masks_and_both_backends_agree(backend, kind):
    x = _x()
    dout = _x(seed=1)
    res = {}
    for name in ("numpy", "numba"):
        backend(name)
        layer = Attention(12, 2, rng=3, dropout=0.3, init_std=0.3, **LAYERS[kind])
        layer.seed((7, 1))
        with no_grad():
            a = _call(layer, x, kind)
        layer.seed((7, 1))
        b = _call(layer, x, kind)
        np.testing.assert_array_equal(a, b)
        dx = layer.backward(dout)
        layer.seed((7, 2))
        with no_grad():
            assert not np.array_equal(_call(layer, x, kind), a)
        res[name] = a, dx
    np.testing.assert_allclose(res["numba"][0], res["numpy"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res["numba"][1], res["numpy"][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_rows_of_a_batch_draw_the_whole_batchs_masks(kind):
    """Inside batch_rows_from(2), rows 2: of a batch get the masks the whole batch
    gives them (the data-parallel convention of nn.Dropout)."""
    x = _x(dtype=np.float64)
    layer = Attention(12, 2, rng=3, dropout=0.5, init_std=0.3, dtype=np.float64, **LAYERS[kind])
    with no_grad():
        layer.seed(4)
        whole = _call(layer, x, kind)
        layer.seed(4)
        with batch_rows_from(2):
            part = _call(layer, x[2:], kind, slice(2, None))
        np.testing.assert_allclose(part, whole[2:], rtol=1e-12, atol=1e-14)
        layer.seed(4)
        assert not np.allclose(_call(layer, x[2:], kind, slice(2, None)), whole[2:])


def test_model_config_field_and_old_configs():
    cfg = nn.ModelConfig(vocab_size=11, dim=12, n_heads=2)
    assert cfg.attn_dropout == 0.0 and "attn_dropout" not in cfg.to_dict()  # as before the field
    assert nn.ModelConfig.from_dict(cfg.to_dict()) == cfg
    on = nn.ModelConfig(vocab_size=11, dim=12, n_heads=2, attn_dropout=0.1)
    assert on.to_dict()["attn_dropout"] == 0.1 and nn.ModelConfig.from_dict(on.to_dict()) == on
    model = nn.Transformer(on)
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    assert len(layers) == 2 and all(m.dropout == 0.1 for m in layers)
    with pytest.raises(ValueError, match=r"attn_dropout: expected a probability in \[0, 1\), got 1.5"):
        nn.ModelConfig(vocab_size=11, dim=12, n_heads=2, attn_dropout=1.5)


def test_whole_model_gradients_with_attention_dropout():
    """A bert-preset classifier with attention dropout 0.3 in training mode
    (check_module reseeds the masks before every forward)."""
    cfg = nn.ModelConfig.for_arch("bert", vocab_size=11, dim=6, n_heads=2, n_layers=2, d_ff=7,
                                  max_len=7, dropout=0.0, attn_dropout=0.3, init_std=0.5,
                                  n_classes=3, eps=1e-5)
    model = nn.WithLoss(nn.Classifier(cfg, seed=7), nn.CrossEntropyLoss())
    ids = np.random.default_rng(1).integers(0, 11, (2, 5))
    km = np.ones((2, 5), bool)
    km[0, 3:] = False
    check_module(model, ids, km, targets=np.array([2, 0]), title="attn dropout").assert_ok()
    with no_grad():
        model.seed(0)
        a = model.model(ids, km)
        model.seed(1)
        assert not np.allclose(a, model.model(ids, km))  # the masks are in use
