"""sentence-transformers on the same texts as minilm_bench.rs: texts/s on one thread.

    HF_HUB_OFFLINE=1 .local/st-venv/bin/python crates/embedder/examples/minilm_bench_st.py \
        .local/models/all-MiniLM-L6-v2 [TEXTS] [--rounds N]

TEXTS holds one JSON string per line (written by the extraction worker's `chunk_texts`
example); without it, the generated texts of minilm_bench.rs. sentence-transformers sorts
the texts by length itself and runs them in batches of 32. (.local/st-venv: see
crates/embedder/tests/fixtures/minilm_reference.py.) One thread, as the Rust bench with
RAYON_NUM_THREADS=1.
"""

import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

WORDS = [
    "the", "river", "market", "report", "showed", "that", "prices", "rose", "after", "rain",
    "and", "workers", "in", "city", "planned", "roads",
]


def generated(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(250))


def main() -> None:
    args = sys.argv[1:]
    rounds = 1
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    model_dir = args[0]
    if len(args) > 1:
        with open(args[1], encoding="utf-8") as f:
            texts = [json.loads(line) for line in f if line.strip()]
    else:
        texts = [generated(i) for i in range(256)]
    torch.set_num_threads(1)
    model = SentenceTransformer(model_dir, device="cpu")
    pieces = sum(min(len(ids), 256) for ids in model.tokenizer(texts)["input_ids"])
    model.encode(texts[:32], batch_size=32)
    for r in range(rounds):
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
        secs = time.perf_counter() - started
        assert len(vectors) == len(texts)
        print(
            f"sentence-transformers {__import__('sentence_transformers').__version__} "
            f"(torch {torch.__version__}): {len(texts)} texts "
            f"({pieces / len(texts):.0f} word pieces on average), batch 32, threads 1, "
            f"round {r + 1}: {len(texts) / secs:.1f} texts/s, {pieces / secs:.0f} word pieces/s "
            f"({secs:.2f} s)"
        )


if __name__ == "__main__":
    main()
