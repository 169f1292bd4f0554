"""What the API and the pages share over HTTP: the request's database, the error shape, bearer auth and rate limits, middleware."""
