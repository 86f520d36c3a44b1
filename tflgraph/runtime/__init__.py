"""The real runtimes (LiteRT, TFLM): isolated runners, model verification, targets."""
