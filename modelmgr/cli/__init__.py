"""The command line: ``modelmgr`` / ``python -m modelmgr`` over in-process managers or a server.

``commands`` (argument parsing and the local and remote backends), ``client`` (the HTTP and
``/api/events`` client of a running studio), ``readme_gen`` (the README's generated blocks).
May import ``modelmgr.services`` and every layer below it.
"""
