"""Small example plugins that show the host's hooks."""
