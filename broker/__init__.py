"""The broker: the federation's trusted third party and the only door to released data."""
