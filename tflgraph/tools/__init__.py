"""Views of a model: summaries, field-by-field comparison, DOT graphs, pass docs."""
