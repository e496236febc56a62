"""WSGI entry point: ``flask --app wsgi ...`` and production servers use ``app``."""

from admin_app import create_app

app = create_app()
