"""The data dip: everything a Genesys lookup touches, from the request to the answer.

It never imports ``shared.scale``; what both need lives in the common core (``shared``),
and it never imports ``app``, the composition root that wires it.
"""
