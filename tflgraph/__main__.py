import sys

from tflgraph.cli import main

sys.exit(main())
