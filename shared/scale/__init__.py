"""The scale schedule: always-ready and pre-warmed instances by day, night and risk, and
the operators' surge switch.

It never imports ``shared.dip``; what both need lives in the common core (``shared``),
and it never imports ``app``, the composition root that wires it.
"""
