"""The composition root: where dipguard's settings are combined and its parts wired.

It stands above both wings (``shared.dip``, ``shared.scale``) and the core (``shared``):
it may import all of them, and none of them imports it. function_app.py reaches the
wired parts through ``app.runtime.runtime()``.
"""
