"""WSGI entry point: ``flask --app wsgi ...`` and production servers use ``app``."""

import sys

from admin_app import create_app
from llm_tracker import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # Whoever starts the app (any flask command, a WSGI server) needs the bad setting, in one
    # line, not a traceback through Flask's app loader; SystemExit passes that loader by.
    sys.exit(f"Error: {exc}")
