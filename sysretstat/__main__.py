import sys

from sysretstat.commands.cli import main

sys.exit(main())
