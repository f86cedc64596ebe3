"""The floor for bench.cpu: an HTTP function at the dip's route that returns a constant
answer of the dip's size and shape, through the same dev host and Microsoft's worker."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_ANSWER = (
    '{"customerFound":true,"customerId":"C-000001","customerTier":"Gold","isVip":false,'
    '"preferredLanguage":"en-US","source":"cache","matchedBy":"ani"}'
)


@app.function_name("ivr_lookup")
@app.route(route="lookup", methods=["POST"])
async def ivr_lookup(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_ANSWER, status_code=200, mimetype="application/json")
