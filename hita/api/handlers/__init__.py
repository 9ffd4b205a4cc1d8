"""Thin handlers: parse the request, call a service, answer JSON. Who may call
each one is checked before it runs, from the route table (``hita.api.routes``)."""
