"""Helpers for the Hugging Face conformance tests (real clients in subprocesses)."""
