import sys

from appinfra.cli import main

sys.exit(main())
