"""sentence-transformers on the same texts as minilm_bench.rs: texts/s for ~256-token chunks.

    HF_HUB_OFFLINE=1 .local/st-venv/bin/python crates/embedder/examples/minilm_bench_st.py \
        .local/models/all-MiniLM-L6-v2 [TEXTS] [BATCH]

(.local/st-venv: see crates/embedder/tests/fixtures/minilm_reference.py.) One thread, as the
Rust bench with RAYON_NUM_THREADS=1.
"""

import sys
import time

import torch
from sentence_transformers import SentenceTransformer

WORDS = [
    "the", "river", "market", "report", "showed", "that", "prices", "rose", "after", "rain",
    "and", "workers", "in", "the", "city", "planned", "new", "roads", "while", "schools",
    "opened", "late", "because", "of", "snow", "council", "members", "voted", "on", "budget",
    "for", "parks", "libraries", "hospitals", "engineers", "measured", "water", "levels",
    "near", "bridge", "farmers", "sold", "grain", "to", "mills", "across", "region", "during",
    "autumn", "when", "harvest", "was", "strong", "despite", "dry", "summer", "storms",
    "damaged", "power", "lines", "north", "coast", "towns", "again",
]


def text(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(250))


def main() -> None:
    model_dir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    torch.set_num_threads(1)
    model = SentenceTransformer(model_dir, device="cpu")
    texts = [text(i) for i in range(n)]
    tokens = len(model.tokenizer(texts[0])["input_ids"])
    model.encode(texts[:batch], batch_size=batch)
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch, normalize_embeddings=True)
    secs = time.perf_counter() - started
    assert len(vectors) == n
    print(
        f"sentence-transformers {__import__('sentence_transformers').__version__} "
        f"(torch {torch.__version__}): {n} texts of {min(tokens, 256)} tokens, batch {batch}, "
        f"threads 1: {n / secs:.1f} texts/s ({secs:.2f} s)"
    )


if __name__ == "__main__":
    main()
