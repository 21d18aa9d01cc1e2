"""Stage 2, tokens: the token text. A score <-> words, exactly at the musical grid.

`vocab` is the vocabulary written once as data, `grammar` the automaton derived from
it (validator, parser and the constrained sampler's masks), `codec` score <-> text,
`report` the round-trip check, `tokenizer` the Hugging Face tokenizer of the words
(text <-> ids; the one module here that loads transformers, never torch).
"""
