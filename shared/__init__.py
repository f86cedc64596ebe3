"""dipguard's logic: the common core (this package's modules) and its two wings,
``shared.dip`` and ``shared.scale``. The core imports no wing; ``app`` wires them."""
