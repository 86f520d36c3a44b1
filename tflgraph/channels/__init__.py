"""Channel dependency analysis: which channels of a model can be removed together."""
