"""Simulators of the five providers, each speaking its provider's API on 127.0.0.1."""
