"""Helpers the tests import: constants, page parsers, loopback servers and providers."""
