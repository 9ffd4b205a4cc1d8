"""Thin handlers: parse and check the request, call a service, answer JSON."""
