"""dipguard's trigger table. Each trigger parses, calls one function in shared/, and formats."""

from __future__ import annotations

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# --- data dip (issue 2) ---

# --- scale schedule and surge (issue 3) ---
