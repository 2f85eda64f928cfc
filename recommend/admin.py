"""Admin of the recommend app (its models arrive with the recommend issue)."""
