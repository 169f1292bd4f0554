// Starts Swagger UI on our own document; kept in a file so that the CSP needs no inline script.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
