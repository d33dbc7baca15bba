"""Real Hugging Face clients in subprocesses: `runner` runs a script with a stock client;
`common` holds the conformance tests' fake Hub, recorded proxy and fixtures."""
