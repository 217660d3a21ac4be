"""Stage 2, the index: clauses → embeddings (cache, worker pool, shipped vectors) → the Chroma
store and the in-memory lexical (bm25) and dense indexes that queries score."""
