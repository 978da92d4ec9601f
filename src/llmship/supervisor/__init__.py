"""``llmship up``: start, watch and stop the local stack."""
