"""Users, sessions, API keys and security events."""
