"""Reproducible speed, memory and quality measurements; `make bench` runs them all."""
