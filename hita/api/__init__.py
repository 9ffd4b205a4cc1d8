"""HTTP: thin handlers, schemas and middlewares. Calls services; no SQL, no Redis."""
