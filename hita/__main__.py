import sys

from hita.cli import main

sys.exit(main())
