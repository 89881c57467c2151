"""The request path: who is asking (auth), routing, admission, calling a backend chain, cascades, streaming,
accounting and explanations, in the order `request_path.RequestPath.serve` runs them; and the embeddings path."""
