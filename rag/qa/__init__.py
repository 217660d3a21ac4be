"""Stage 3, questions and answers: search and fusion over the index, scope checks, answer
composition (extractive or through an LLM), and the Assistant façade the CLI, API and UI call."""
