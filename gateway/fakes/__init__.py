"""Wire-faithful fake Ollama, Gemini and OpenAI servers for tests, the demo and benchmarks."""
