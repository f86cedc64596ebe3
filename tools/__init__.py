"""Operator tools: the commands an operator runs from a checkout (``python -m tools.NAME``).

They plan capacity, preview a scale schedule, load a CRM export and warm the read model.
They are never deployed (``.funcignore`` leaves ``tools/`` out of the package). They may
import both wings; nothing in ``shared`` or ``function_app.py`` imports them.
"""
