"""Stage 1, the corpus: source files → documents → clauses, and the data written about them
(question hooks, English titles, aliases, links between clauses, the lexicon)."""
