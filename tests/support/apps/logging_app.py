"""A FunctionApp that logs at INFO as it is indexed: from its own logger and from the Azure
SDK's request logger, for the dev host's logging test."""

import logging

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

logging.getLogger("loggingapp").info("app record at info")
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("sdk record at info")


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")
