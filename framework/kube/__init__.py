"""Talking to the API server with raw dicts: client, list+watch caches, label selectors, leases."""
