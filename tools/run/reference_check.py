#!/usr/bin/env python3
"""The independent references that tests/test_model.c records (a one-off
check, not run by the build). Needs: pip install gguf tokenizers numpy
(e.g. in a scratch venv).

  reference_check.py MODEL.gguf tokens TEXT...   token ids from HuggingFace `tokenizers`
                                                 (vocabulary and merges from the GGUF,
                                                 SmolLM2's pre-tokenizer)
  reference_check.py MODEL.gguf logits ID,ID,... float64 numpy forward pass: argmax per
                                                 position and mean next-token NLL
"""
import sys

import numpy as np
from gguf import GGUFReader


def strings(reader, name):
    field = reader.fields[name]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def hf_tokenizer(reader):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    tokens = strings(reader, "tokenizer.ggml.tokens")
    merges = strings(reader, "tokenizer.ggml.merges")
    types_field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ", 1)) for m in merges]))
    # SmolLM2's tokenizer.json: each digit alone, then GPT-2 byte-level.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i in range(len(tokens)) if types[i] == 3])  # control tokens
    return tok


def forward(reader, ids):
    tensors = {t.name: t for t in reader.tensors}

    def weight(name):
        from gguf.quants import dequantize
        t = tensors[name]
        shape = [int(x) for x in reversed(t.shape)]
        return dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float64)

    def meta(name):
        return reader.fields[name].contents()

    n_layer, d = meta("llama.block_count"), meta("llama.embedding_length")
    n_head, n_kv = meta("llama.attention.head_count"), meta("llama.attention.head_count_kv")
    hd, base = d // n_head, meta("llama.rope.freq_base")
    eps = meta("llama.attention.layer_norm_rms_epsilon")
    n = len(ids)
    embd = weight("token_embd.weight")
    x = embd[ids]
    angle = np.arange(n)[:, None] * base ** (-np.arange(0, hd, 2) / hd)[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]

    def rope(v):  # GGUF Llama layout: rotate adjacent pairs
        out = np.empty_like(v)
        out[..., 0::2] = v[..., 0::2] * cos - v[..., 1::2] * sin
        out[..., 1::2] = v[..., 0::2] * sin + v[..., 1::2] * cos
        return out

    def rms(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    causal = np.tril(np.ones((n, n))) > 0
    for layer in range(n_layer):
        p = "blk.%d." % layer
        h = rms(x, weight(p + "attn_norm.weight"))
        q = rope((h @ weight(p + "attn_q.weight").T).reshape(n, n_head, hd))
        k = rope((h @ weight(p + "attn_k.weight").T).reshape(n, n_kv, hd))
        v = (h @ weight(p + "attn_v.weight").T).reshape(n, n_kv, hd)
        out = np.zeros((n, n_head, hd))
        for qh in range(n_head):
            kh = qh // (n_head // n_kv)
            s = np.where(causal, q[:, qh] @ k[:, kh].T / np.sqrt(hd), -np.inf)
            pr = np.exp(s - s.max(-1, keepdims=True))
            out[:, qh] = (pr / pr.sum(-1, keepdims=True)) @ v[:, kh]
        x = x + out.reshape(n, d) @ weight(p + "attn_output.weight").T
        h = rms(x, weight(p + "ffn_norm.weight"))
        g, u = h @ weight(p + "ffn_gate.weight").T, h @ weight(p + "ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ weight(p + "ffn_down.weight").T
    return rms(x, weight("output_norm.weight")) @ embd.T  # tied output head


def main(argv):
    if len(argv) < 4 or argv[2] not in ("tokens", "logits"):
        sys.stderr.write(__doc__)
        return 2
    reader = GGUFReader(argv[1])
    if argv[2] == "tokens":
        tok = hf_tokenizer(reader)
        for text in argv[3:]:
            ids = tok.encode(text).ids
            assert tok.decode(ids, skip_special_tokens=False) == text
            print(repr(text), ids)
        return 0
    ids = [int(x) for x in argv[3].split(",")]
    logits = forward(reader, ids)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    print("argmax", logits.argmax(-1).tolist())
    print("mean NLL %.9f" % -np.mean([logp[i, ids[i + 1]] for i in range(len(ids) - 1)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
