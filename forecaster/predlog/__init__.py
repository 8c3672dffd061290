"""The prediction log's schema and its migrations, shared by the service (which writes the log)
and the pipelines that read it; Alembic owns the schema, nothing calls create_all."""
