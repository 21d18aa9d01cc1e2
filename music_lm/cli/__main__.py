"""`python -m music_lm.cli` (and `accelerate launch -m music_lm.cli train ...`)."""

from music_lm.cli import main

main()
