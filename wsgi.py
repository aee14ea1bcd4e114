"""WSGI entry point: ``gunicorn wsgi:app``."""

from verify import create_app

app = create_app()
