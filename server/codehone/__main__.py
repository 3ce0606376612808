import sys

from codehone.cli import main

sys.exit(main())
