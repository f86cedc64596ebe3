"""The Genesys data actions' templates, rendered as Genesys renders them.

Genesys builds each dip's body from ``config.request.requestTemplate`` in
genesys/ivr-lookup.data-action.json, a Velocity template, and its headers from the Velocity
values of ``config.request.headers``, where ``authResponse`` is the JSON answer of the
integration's custom auth action. That action's request, in
genesys/entra-token.custom-auth-action.json, is rendered from the integration's
``credentials``. airspeed is a Python implementation of Velocity; ``GenesysEsc`` stands in
for the ``esc`` tool Genesys puts in every template's context.
"""

from __future__ import annotations

import json
from typing import Any

import airspeed

from tests.support.services import ROOT

ACTION = json.loads((ROOT / "genesys" / "ivr-lookup.data-action.json").read_text())
TEMPLATE = ACTION["config"]["request"]["requestTemplate"]
AUTH_ACTION = json.loads((ROOT / "genesys" / "entra-token.custom-auth-action.json").read_text())
AUTH_REQUEST = AUTH_ACTION["config"]["request"]

# Characters java.net.URLEncoder leaves as they are; it writes a space as "+" and every other
# character as %XX of its UTF-8 bytes, upper-case hex (the URLEncoder javadoc).
_URL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")


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

    def url(self, value: object) -> str | None:
        """EscapeTool.url: ``URLEncoder.encode(String.valueOf(string), "UTF-8")``, null for
        null (apache/velocity-tools, EscapeTool.java), which is the form encoding an
        application/x-www-form-urlencoded body and a path segment both read back."""
        if value is None:
            return None
        out = []
        for char in str(value):
            if char in _URL_SAFE:
                out.append(char)
            elif char == " ":
                out.append("+")
            else:
                out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
        return "".join(out)


_COMPILED = airspeed.Template(TEMPLATE)


def render(template: str, context: dict[str, Any]) -> str:
    """Any Velocity template of the exports with the given context."""
    return str(airspeed.Template(template).merge(context))


def render_request_body(inputs: dict[str, str], esc: GenesysEsc) -> str:
    """The request body Genesys would send; an input missing from ``inputs`` is absent."""
    return str(_COMPILED.merge({"input": dict(inputs), "esc": esc}))


def render_lookup_headers(auth_response: dict[str, Any] | None, esc: GenesysEsc) -> dict[str, str]:
    """The lookup action's headers, given the auth action's answer (None: no answer)."""
    context: dict[str, Any] = {"esc": esc}
    if auth_response is not None:
        context["authResponse"] = auth_response
    return {
        name: render(value, context)
        for name, value in ACTION["config"]["request"]["headers"].items()
    }


def render_auth_request(credentials: dict[str, str], esc: GenesysEsc) -> tuple[str, str]:
    """The custom auth action's URL and body for the integration's credential fields."""
    context = {"credentials": dict(credentials), "esc": esc}
    return render(AUTH_REQUEST["requestUrlTemplate"], context), render(
        AUTH_REQUEST["requestTemplate"], context
    )
