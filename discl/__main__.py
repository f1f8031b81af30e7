import sys

from discl.cli import main

sys.exit(main())
