"""Stage 4, the accuracy benchmark: datasets and judgments, configurations (including the naive
baseline and other systems' answers), metrics with uncertainty, reports, TREC files, comparisons."""
