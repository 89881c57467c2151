"""The vocabulary every part shares, pure: OpenAI wire types, the error tree, limits, prices, settings, API key
strings, what a request may carry and the logged prompt's format."""
