"""dipguard's trigger table. Each trigger parses, calls one function in shared/, and formats."""
