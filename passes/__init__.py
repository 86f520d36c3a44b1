"""Built-in rewrite passes, installed as `tflgraph.passes`; one pass per module.

The core finds them through `tflgraph.pipeline.BUILTIN_PASSES` when they are first asked for.
"""
