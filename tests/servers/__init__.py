"""Real HTTP servers on loopback for tests: a scripted OpenAI-like server and a llama.cpp server."""
