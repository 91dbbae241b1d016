"""Tokenizers, dataset loaders, batching and MLM masking.

Tokenizers (``numformer.data.tokenizers``): WordTokenizer (the article's
lower-cased words and punctuation over a frequency vocabulary), ByteTokenizer
(UTF-8 bytes); both with <pad> 0, <unk> 1, <mask> 2, <cls> 3, <sep> 4.

    tok = WordTokenizer.build(texts, max_size=20000, min_freq=2)
    tok.save("vocab.txt"); tok = load_tokenizer("vocab.txt")
    seqs = tok.encode_batch(texts)                     # list of 1-D int64 arrays

Loaders (``datasets``, ``imdb``; any path, files or directories, gzip or not):
load_imdb, load_sst2, load_sst5, load_europarl, load_tinyshakespeare,
load_wikitext2, load_text. The package's own copies: ``embedded``.
Bad data raises DataError (a ValueError) naming the file and the line.

Batches (``batching``, ``masking``):

    for b in iterate_batches(seqs, 32, tok.pad_id, labels=y, max_len=128,
                             cls_id=tok.cls_id, rng=rng):   # b.ids (B, T), b.key_mask (B, T)
    for m in mlm_batches(seqs, tok, 32, rng, max_len=64):     # m.ids, m.key_mask,
        logits = model(m.ids, m.key_mask, m.positions)        # m.positions (N,), m.targets (N,)
"""

from numformer.data import embedded
from numformer.data.batching import (Batch, as_rng, collate, iterate_batches, plan_batches,
                                     random_lm_batch, sequential_lm_batches)
from numformer.data.datasets import (LabelledTexts, download_sst, load_europarl, load_sst,
                                     load_sst2, load_sst5, load_text, load_tinyshakespeare,
                                     load_wikitext2)
from numformer.data.files import DataError
from numformer.data.imdb import by_rating, download_imdb, load_imdb
from numformer.data.masking import MLMBatch, MLMMasker, mask_tokens, mlm_batches
from numformer.data.tokenizers import (CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_IDS, SPECIALS,
                                       UNK_ID, ByteTokenizer, Tokenizer, WordTokenizer,
                                       load_tokenizer)

__all__ = ["embedded", "Batch", "as_rng", "collate", "iterate_batches", "plan_batches",
           "random_lm_batch", "sequential_lm_batches", "LabelledTexts", "download_sst",
           "load_europarl", "load_sst", "load_sst2", "load_sst5", "load_text",
           "load_tinyshakespeare", "load_wikitext2", "DataError", "download_imdb", "load_imdb",
           "by_rating",
           "MLMBatch", "MLMMasker", "mask_tokens", "mlm_batches", "SPECIALS", "SPECIAL_IDS",
           "PAD_ID", "UNK_ID", "MASK_ID", "CLS_ID", "SEP_ID", "Tokenizer", "WordTokenizer",
           "ByteTokenizer", "load_tokenizer"]
