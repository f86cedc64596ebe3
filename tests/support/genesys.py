"""The Genesys data action's request template, rendered as Genesys renders it.

Genesys builds each dip's body from ``config.request.requestTemplate`` in
genesys/ivr-lookup.data-action.json, a Velocity template. airspeed is a Python
implementation of Velocity; ``GenesysEsc`` stands in for the ``esc`` tool Genesys puts in
the template's context.
"""

from __future__ import annotations

import json

import airspeed

from tests.support.services import ROOT

ACTION = json.loads((ROOT / "genesys" / "ivr-lookup.data-action.json").read_text())
TEMPLATE = ACTION["config"]["request"]["requestTemplate"]


class GenesysEsc:
    """Stand-in for the ``esc`` tool in a Genesys data action's Velocity context.

    How its behaviour was established: Genesys's "Velocity macros for data actions"
    (https://help.mypurecloud.com/articles/velocity-macros-data-actions/) says the ``esc``
    prefix is Velocity's EscapeTool, and that ``esc.jsonString`` is what escapes "strings inside
    JSON bodies": the escaped content of a JSON string, between quotes the template writes
    itself. The stored copy of the article shows no example output, so the action's test in
    Genesys (Setup > Test, which shows the resolved request) is the final check that it adds
    no quotes of its own. The same article documents formal vs. silent notation (``${x}``
    outputs the variable name when x is null, ``$!{x}`` outputs nothing). For a null argument,
    every escaping method of Velocity Tools' EscapeTool returns null ("null if null string
    input": apache/velocity-tools, velocity-tools-generic/src/main/java/org/apache/velocity/
    tools/generic/EscapeTool.java), and a null result is exactly what makes a non-quiet call
    render as its own text. Whether Genesys writes non-ASCII characters as \\uXXXX escapes or
    as UTF-8 is not documented, so the tests run with both; JSON parsers read either as the
    same string.
    """

    def __init__(self, ascii_only: bool) -> None:
        self.ascii_only = ascii_only

    def jsonString(self, value: object) -> str | None:
        if value is None:
            return None
        return json.dumps(str(value), ensure_ascii=self.ascii_only)[1:-1]


_COMPILED = airspeed.Template(TEMPLATE)


def render_request_body(inputs: dict[str, str], esc: GenesysEsc) -> str:
    """The request body Genesys would send; an input missing from ``inputs`` is absent."""
    return str(_COMPILED.merge({"input": dict(inputs), "esc": esc}))
