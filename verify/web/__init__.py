"""The web layer: the blueprints (``/v1`` and the public endpoints, gateway webhooks, the widget, the sandbox, the
request line and ``/metrics``), what they need of a request, the JSON views and the problem renderer. Nothing
below it imports Flask or werkzeug."""
