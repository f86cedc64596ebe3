"""dipguard: the app logic behind function_app.py."""
