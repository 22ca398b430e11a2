"""The HTTP face of the host: the falcon app, its endpoints, and HTTPS serving on waitress."""
