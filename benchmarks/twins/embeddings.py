"""PyTorch's side of the embeddings benchmark (numformer/bench/embeddings.py):
transformers' BertModel of all-MiniLM-L6-v2 on the parent's batches (the same
token ids and masks as numformer's), mean pooling over the mask and L2
normalisation, as sentence-transformers' ``encode`` does. Tokenizing is timed
apart with the Rust ``tokenizers`` of the model's tokenizer.json, and its ids
are compared with the batches' (numformer's WordPiece). Runs in a process of
its own that never loads numformer's kernels or runtime settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.twins._torch import torch_gemm_peak, torch_pinned, twin_info
from numformer.bench.embeddings import add_child_args, batches_of, check_and_time
from numformer.bench.harness import child_main, load_npz


def body(args) -> dict:
    torch = torch_pinned(args.threads)
    import numpy as np
    try:
        import tokenizers
        import transformers
    except ImportError as e:
        return {"skipped": f"torch reference: {e}"}
    from numformer.pretrained.sentence import default_model_path  # a path; loads nothing
    model_dir = default_model_path()
    folder = Path(args.folder)
    data = load_npz(folder / "batches.npz")
    sentences = [str(s) for s in data["sentences"]]
    batches = [(torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64)), idx)
               for ids, mask, idx in batches_of(data)]
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=int(data["meta"]["max_length"]))
    tok.no_padding()  # tokenizer.json pads to a fixed length; the batches pad themselves
    transformers.utils.logging.disable_progress_bar()
    model = transformers.BertModel.from_pretrained(str(model_dir)).eval()
    C = model.config.hidden_size

    def embed():
        out = np.zeros((len(sentences), C), dtype=np.float32)
        with torch.inference_mode():
            for ids, mask, idx in batches:
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
                m = mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)  # (B, C)
                out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out
    # the Rust tokenizer's ids against the batches' (numformer's WordPiece)
    ours = {int(i): row[m].tolist() for ids, mask, index in batches_of(data)
            for i, row, m in zip(index, ids, mask)}
    theirs = tok.encode_batch(sentences)
    differ = sum(ours[i] != e.ids for i, e in enumerate(theirs))
    row = check_and_time(embed, lambda: tok.encode_batch(sentences), data, folder,
                         f"torch {torch.__version__} (transformers BertModel)", args.threads,
                         args.repeats, {})
    info = twin_info(torch, args.threads)
    info["blas"] = {"torch": info["blas"]}
    info["transformers"] = transformers.__version__
    return {"row": row, "machine": info, "gemm_peak": torch_gemm_peak(torch),
            "tokenizers_agree": f"{len(sentences) - differ} of {len(sentences)} sentences "
                                f"give the same ids"}


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], body, add_child_args))
