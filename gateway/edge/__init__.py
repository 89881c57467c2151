"""The HTTP edge: the server and its connection guard, the OpenAPI document, and the Responses API's translation
to and from chat. The route handlers are in gateway/api/."""
