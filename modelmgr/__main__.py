import sys

from modelmgr.cli.commands import main

sys.exit(main())
