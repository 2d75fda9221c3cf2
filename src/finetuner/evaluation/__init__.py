"""Retrieval metrics, chunked top-k search and the evaluator that ties them to a model."""
