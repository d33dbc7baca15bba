"""Hermetic fakes for hoard's tests: deterministic content and a fake Hugging Face Hub + CDN."""
