"""The file format: the schema as data, the zero-copy reader and the aligned, atomic writer."""
