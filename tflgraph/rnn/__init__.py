"""Recurrent loops: WHILE-loop anatomy, cell recognition and the fused-sequence-op rewrite."""
