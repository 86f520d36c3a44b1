"""The numpy reference interpreter, its kernels and the one equivalence checker."""
