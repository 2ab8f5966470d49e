import sys

from pymdbn.cli import main

sys.exit(main())
