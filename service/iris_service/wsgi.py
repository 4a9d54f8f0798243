"""WSGI entry for gunicorn: ``iris_service.wsgi:app``."""

from iris_service.app import create_app

app = create_app()
