"""A FunctionApp the worker must refuse: a warmup parameter annotated with the wrong type,
the mistake that once kept dipguard's every function from loading in Azure."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="fine", methods=["GET"])
def fine(req: func.HttpRequest) -> str:
    return "fine"


@app.warm_up_trigger("warmup")
async def warmup(warmup: func.Context) -> None:
    return None
