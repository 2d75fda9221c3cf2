"""Offline demos on bundled real data: ``finetuner demo text|image|clip``."""
