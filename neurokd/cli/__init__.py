"""``neurokd``: one entry point; subcommands mirror the stages of the flow (``main``). The parser
is in :mod:`.parser`, the commands in :mod:`.commands`."""

from neurokd.cli.commands import COMMANDS
from neurokd.cli.main import main
from neurokd.cli.parser import SEARCH_PROXIES, SEARCH_STRATEGIES, build_parser

__all__ = ["COMMANDS", "SEARCH_PROXIES", "SEARCH_STRATEGIES", "build_parser", "main"]
