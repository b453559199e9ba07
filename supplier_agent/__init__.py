"""The supplier agent: runs at a data supplier's site, prepares data and answers broker tasks."""
