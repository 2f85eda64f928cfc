"""Recommendation models arrive with the recommend issue; behaviour events live in ``catalog``."""
